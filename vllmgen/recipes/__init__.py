"""vLLM's recipes (vllm-project/recipes, recipes.vllm.ai) as a starting point: `vllmgen init --recipe`.

``source`` reads a recipes checkout or the site's JSON API; ``resolve`` merges a recipe for one
strategy, hardware profile, variant and feature set as the site's command builder does;
``tospec`` binds the result to hosts and writes a commented spec that validates; ``record`` is the
spec's header; ``command`` is the command line's entry; ``drift`` compares a spec's recorded recipe
with the recipe today.
"""
