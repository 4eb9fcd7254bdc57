"""The Kubernetes target (``runtime.kind: kubernetes``): kustomize-ready manifests in build/<name>/.

A multi-node instance is one LeaderWorkerSet group, single-node replicas one Deployment; the router
and the front door are Deployments of their own. vllmgen never talks to a cluster: apply, status and
down print the kubectl commands to run. ``spec`` is this target's part of the spec, ``plan`` what it
decides, ``manifests`` the objects, ``render`` the files, ``rules`` its checks, ``runner`` its commands.
"""
