"""Every cross-field rule, run together: each rule module imports ``Finding`` from
vllmgen.spec.rules.core, so the list of all of them lives here, above them."""

from __future__ import annotations

from vllmgen.spec.model import Spec
from vllmgen.spec.rules.catalog import serve_flags_exist
from vllmgen.spec.rules.core import RULES as CORE_RULES
from vllmgen.spec.rules.core import Finding
from vllmgen.spec.rules.gateway import gateway_rules
from vllmgen.spec.rules.mounts import mount_clashes
from vllmgen.spec.rules.offline import RULES as OFFLINE_RULES
from vllmgen.spec.rules.parallel import parallel_rules
from vllmgen.spec.rules.pd import pd_rules
from vllmgen.spec.rules.process import RULES as PROCESS_RULES
from vllmgen.spec.rules.secrets import RULES as SECRET_RULES
from vllmgen.targets.kubernetes.rules import kubernetes_rules

ALL_RULES = (*CORE_RULES, serve_flags_exist, mount_clashes, *PROCESS_RULES, parallel_rules, *SECRET_RULES,
             gateway_rules, *OFFLINE_RULES, pd_rules, kubernetes_rules)


def check_rules(spec: Spec, *, lenient: bool = False) -> list[Finding]:
    """Every rule's findings. ``lenient``: ``spec`` is partial (vllmgen.spec.partial) and a rule that
    meets a value that did not validate stops there, keeping what it found before."""
    findings: list[Finding] = []
    for rule in ALL_RULES:
        if not lenient:
            findings.extend(rule(spec))
            continue
        try:
            for finding in rule(spec):
                findings.append(finding)
        except Exception:  # noqa: BLE001 - a rule over a partly invalid spec does what it can
            pass
    return findings
