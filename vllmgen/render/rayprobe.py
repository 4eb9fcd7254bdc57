"""The one question both the runner and serve.sh ask the Ray head: its GPUs and its live nodes.

Run inside the head container with its python. One definition, so the script a person runs by hand
and ``vllmgen apply`` wait for the same thing. (Double quotes only: it is single-quoted in scripts.)
"""

RAY_PROBE = (
    'import json, ray; ray.init(address="auto", logging_level="ERROR", log_to_driver=False); '
    'nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]; '
    'print(json.dumps({"gpus": int(ray.cluster_resources().get("GPU", 0)), "nodes": sorted(nodes)}))'
)
# serve.sh reads the GPU count out of the probe's JSON line with sed (the host may have no python)
GPUS_SED = r's/.*"gpus": \([0-9][0-9]*\).*/\1/p'
