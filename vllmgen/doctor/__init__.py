"""`vllmgen doctor`: check a host before anything is started, and say what is wrong and how to fix it.

Modules: checks (CheckResult), report (table/JSON), gpu, cuda, docker, network, storage, fit (pure
parsers and checks), probe (the only code that touches the host), host (runs them for one node).
"""
