"""Every ``io.vllmgen.*`` label name, in one place: the plan puts them on each container, the runner
reads them back (what is ours, which node and role, whether it is current) and adds its own."""

PREFIX = "io.vllmgen"

# on every planned container (plan, router_artifacts)
DEPLOYMENT = f"{PREFIX}.deployment"
NODE = f"{PREFIX}.node"
ROLE = f"{PREFIX}.role"
CONFIG_HASH = f"{PREFIX}.config-hash"  # the plan's hash of the container; the runner's covers image and secrets too

# on the Kubernetes target's pods (targets.kubernetes): selectors for Services, the router and policies
ENGINE = f"{PREFIX}.engine"  # every vLLM pod (leader, worker, replica)
API = f"{PREFIX}.api"  # pods that run an API server

# added by the runner when it starts one (runner.identity, runner.executor)
IMAGE_ID = f"{PREFIX}.image-id"
SECRETS = f"{PREFIX}.secrets"
GPUS = f"{PREFIX}.gpus"  # "none" on a container started with --no-gpus

# on an image the runner builds: the hash of the Dockerfile it was built from
IMAGE_HASH = f"{PREFIX}.image-hash"
