"""The runner: executes a ``Plan`` on Docker hosts, in order, and proves the deployment serves.

It never re-derives a flag: every container, command and mount comes from the plan. Modules:

    executor    the Executor protocol (the verbs every target's engine answers) and its data types
    targets     which engine drives which node: the target registry's engine, per node in scope
    (the engines live in their targets: targets/docker/sdk.py, targets/process/procexec.py;
     what only Docker does is targets/docker/engine.py's DockerEngine)
    startup     the engine's log read back after apply and in status: start-up phases, NCCL transports
    dryrun      Printing(engine) over a FreshHost, DryRunHttp and Recorder: prints what each target would run; changes nothing
    dockerargs  a planned container as `docker run` words, and those words as SDK arguments (one translation)
    http        the control side's HTTP client (health, models, chat, the key checks): one, passed to the steps
    host        subprocess access to a node's host: files (daemon.json), $HOME, restart docker, nvidia-smi
    daemon_json merge of the plan's daemon.json keys into a host's file, never clobbering it
    secrets     SecretEnv -> values, at apply time, never logged
    progress    what a person sees: one line per action, elapsed time on long waits
    steps       the ordered step plan (preflight ... verify) and its execution: apply and down
    verify      /health, /v1/models, one chat completion, the API key is enforced
    status      containers, cluster view and endpoint health per node

The docker SDK is imported only inside runner.sdk and runner.dockerargs, lazily, so validate/render never load it.
"""
