"""The runner: executes a ``Plan`` on Docker hosts, in order, and proves the deployment serves.

It never re-derives a flag: every container, command and mount comes from the plan. Modules:

    executor    the Executor protocol; DockerSdkExecutor (docker SDK) and DryRunExecutor (printer/recorder)
    host        subprocess access to a node's host: files (daemon.json), $HOME, restart docker, nvidia-smi
    daemon_json merge of the plan's daemon.json keys into a host's file, never clobbering it
    secrets     SecretEnv -> values, at apply time, never logged
    progress    what a person sees: one line per action, elapsed time on long waits
    steps       the ordered step plan (preflight ... verify) and its execution: apply and down
    verify      /health, /v1/models, one chat completion, the API key is enforced
    status      containers, cluster view and endpoint health per node

The docker SDK is imported only inside DockerSdkExecutor, so validate/render never load it.
"""
