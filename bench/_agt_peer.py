"""Peer under test: Microsoft's Agent Governance Toolkit (AGT) ``govern()`` wrapper.

Package: ``agent-governance-toolkit-core`` 5.x on PyPI. Its import surface is still
the pre-consolidation module names, so the wrapper is::

    from agentmesh.governance import govern          # agentmesh/governance/govern.py

``govern(fn, *, policy, agent_id="*", audit=True, ...)`` returns a *synchronous*
``GovernedCallable``; there is no async variant of this wrapper, so the peer here
is sync. One governed call (``GovernedCallable.__call__``) does, in order:

1. build an evaluation context from the kwargs (``action="noop"`` becomes
   ``{"action": {"type": "noop"}}``; positional args after the first are ignored);
2. ``PolicyEngine.evaluate()`` (agentmesh/governance/policy.py) over the loaded
   YAML policy, with the ``deny_overrides`` conflict strategy;
3. append one ``policy_evaluation`` entry to the audit log;
4. call the wrapped function if the decision allowed it.

What is switched ON in this peer, so the comparison stays honest:

* Audit log: ``audit=True`` (the default). This is ``agentmesh.governance.audit.AuditLog``,
  and it is **in memory only**. Every entry is a pydantic ``AuditEntry`` whose
  SHA-256 ``entry_hash`` chains to the previous entry's hash (``previous_hash``), and
  ``MerkleAuditChain`` updates an incremental Merkle tree on each append. Nothing is
  written to disk: ``GovernanceConfig.audit_file`` exists but is never read, and
  ``govern()`` does not accept it. The entry hash covers entry_id, timestamp, event_type,
  agent_did, action, resource, data, outcome and previous_hash. It does not cover
  ``policy_decision``, ``arguments_hash``, ``approver_did`` or ``policy_version``; the
  code itself describes these as "spec v1.0".
* The audit entry is written **before** the tool runs and records the policy decision
  only. AGT never records whether the tool then succeeded or raised.
* Policy: one rule, ``action.type == 'noop'`` -> ``allow``, on top of
  ``default_action: deny`` (:data:`AGT_NOOP_POLICY_YAML`). Pass ``allow_all=True`` for
  AGT's simplest allow-all form (``default_action: allow``, no rules), which skips rule
  evaluation entirely.
* Off (these are AGT's defaults): execution rings, the advisory classifier, approvals
  (the policy never returns ``require_approval``), TRACE session records, and rate limits.
* Optional, ``durable_path=...``: a toolkit ``FileAuditSink``
  (agentmesh/governance/audit_backends.py). It writes a JSON line per entry, chained
  with SHA-256 and HMAC-signed, and opens and closes the file on every write with
  **no fsync**. ``govern()`` has no public way to attach a sink, so this variant
  swaps ``GovernedCallable._audit`` for ``AuditLog(sink=FileAuditSink(...))``.
  It is labelled in :func:`agt_features`.

Not thread-safe: ``AuditLog`` has no lock. Drive the peer from one thread.
The audit log also grows without bound, since every call keeps its ``AuditEntry``
and Merkle nodes in process memory.

Importing ``agentmesh`` emits four ``DeprecationWarning`` messages (agentmesh-platform,
agent-hypervisor, agent-os-kernel, agentmesh-primitives). Under this repo's
``filterwarnings = ["error"]`` those would fail the import, so they are
suppressed around the lazy import only.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "AGT_ALLOW_ALL_POLICY_YAML",
    "AGT_NOOP_POLICY_YAML",
    "agt_audit_entries",
    "agt_audit_verify",
    "agt_features",
    "agt_version",
    "make_agt_governed_noop",
    "noop_tool",
]

# Minimal policy that allows exactly the no-op tool (fail-closed default).
AGT_NOOP_POLICY_YAML = """\
apiVersion: governance.toolkit/v1
name: bench-allow-noop
version: "1.0"
agents: ["*"]
default_action: deny
rules:
  - name: allow-noop
    stage: pre_tool
    condition: "action.type == 'noop'"
    action: allow
"""

# Simplest allow-all policy the toolkit supports: no rules, default allow.
AGT_ALLOW_ALL_POLICY_YAML = """\
apiVersion: governance.toolkit/v1
name: bench-allow-all
version: "1.0"
agents: ["*"]
default_action: allow
rules: []
"""

_NOOP_ACTION = "noop"
_DURABLE_HMAC_KEY = b"agt-bench-peer-hmac-key-not-a-secret"


def noop_tool(**_kwargs: object) -> None:
    """The no-op tool. Its direct call is the baseline for "added latency"."""
    return None


def _import_agt() -> Any:
    """Import ``agentmesh.governance`` lazily, silencing its deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import agentmesh.governance as gov
    return gov


def agt_version() -> str:
    """Installed ``agent-governance-toolkit-core`` version."""
    from importlib.metadata import version

    return version("agent-governance-toolkit-core")


def make_agt_governed_noop(
    *, allow_all: bool = False, durable_path: str | None = None
) -> Callable[[], object]:
    """Return a zero-arg callable that runs :func:`noop_tool` through AGT's ``govern()``.

    The audit log is on. The callable is a ``functools.partial`` over the
    ``GovernedCallable``, which adds only C-level overhead; :func:`agt_audit_entries`
    and :func:`agt_audit_verify` take it to check the audit log afterwards.

    Args:
        allow_all: use :data:`AGT_ALLOW_ALL_POLICY_YAML` (no rules) in place of the
            one-rule :data:`AGT_NOOP_POLICY_YAML`.
        durable_path: additionally mirror every audit entry to a toolkit
            ``FileAuditSink`` at this path (JSONL, HMAC-signed, hash-chained, no fsync).
    """
    gov = _import_agt()
    policy = AGT_ALLOW_ALL_POLICY_YAML if allow_all else AGT_NOOP_POLICY_YAML
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        governed = gov.govern(noop_tool, policy=policy, agent_id="bench-agent", audit=True)
    if durable_path is not None:
        from agentmesh.governance.audit import AuditLog
        from agentmesh.governance.audit_backends import FileAuditSink

        if not hasattr(governed, "_audit"):  # pragma: no cover - upstream layout changed
            raise RuntimeError("AGT GovernedCallable no longer has _audit; cannot attach a sink")
        governed._audit = AuditLog(sink=FileAuditSink(durable_path, _DURABLE_HMAC_KEY))

    call = functools.partial(governed, action=_NOOP_ACTION)
    # Smoke check: one governed call must succeed and add exactly one audit entry.
    before = agt_audit_entries(call)
    call()
    if agt_audit_entries(call) != before + 1:
        raise RuntimeError("AGT govern() did not record an audit entry for the no-op call")
    return call


def _governed_of(call: Callable[..., object]) -> Any:
    target = call.func if isinstance(call, functools.partial) else call
    audit = getattr(target, "audit_log", None)
    if audit is None:
        raise TypeError("not an AGT governed callable with its audit log on")
    return target


def agt_audit_entries(call: Callable[..., object], *, allowed_only: bool = True) -> int:
    """Count the ``policy_evaluation`` entries in the peer's in-memory audit log.

    By default only ``allow`` outcomes are counted. After N benchmark calls this
    should equal N plus the one smoke-check call made by
    :func:`make_agt_governed_noop`.
    """
    audit = _governed_of(call).audit_log
    return len(
        audit.query(
            event_type="policy_evaluation",
            outcome="allow" if allowed_only else None,
            limit=sys.maxsize,
        )
    )


def agt_audit_verify(call: Callable[..., object]) -> bool:
    """Recompute AGT's audit hash chain (``AuditLog.verify_integrity``), and the
    ``FileAuditSink`` HMAC chain too when one is attached.
    """
    audit = _governed_of(call).audit_log
    ok, _err = audit.verify_integrity()
    sink = getattr(audit, "_sink", None)
    if ok and sink is not None and hasattr(sink, "verify_integrity"):
        ok, _err = sink.verify_integrity()
    return bool(ok)


def agt_features(call: Callable[..., object]) -> dict[str, object]:
    """Describe what the peer actually ran with, for the benchmark report."""
    governed = _governed_of(call)
    audit = governed.audit_log
    sink = getattr(audit, "_sink", None)
    policy_names = governed.engine.list_policies()
    return {
        "package": "agent-governance-toolkit-core",
        "version": agt_version(),
        "api": "agentmesh.governance.govern(fn, policy=<yaml>, audit=True)",
        "sync": True,
        "policy": policy_names,
        "audit_log": "in-memory AuditLog, SHA-256 hash chain + incremental Merkle tree",
        "audit_durable": (
            f"FileAuditSink JSONL (HMAC-signed, no fsync) at {sink._path}"
            if sink is not None
            else "no (process memory only)"
        ),
        "audit_records_tool_outcome": False,
        "rings": False,
        "approvals": False,
        "advisory": False,
    }


def _measure(n: int = 20_000) -> None:  # pragma: no cover - manual tool
    """Quick manual latency probe: ``python bench/_agt_peer.py [N]``."""
    import gc
    import statistics
    import tempfile
    import time

    def run(fn: Callable[[], object], label: str) -> list[int]:
        for _ in range(min(1000, n)):
            fn()
        samples: list[int] = []
        clock = time.perf_counter_ns
        gc.disable()
        try:
            for _ in range(n):
                t0 = clock()
                fn()
                samples.append(clock() - t0)
        finally:
            gc.enable()
        samples.sort()
        p50 = samples[len(samples) // 2] / 1000
        p99 = samples[int(len(samples) * 0.99)] / 1000
        mean = statistics.fmean(samples) / 1000
        print(
            f"{label:34s} p50={p50:9.2f}us p99={p99:9.2f}us mean={mean:9.2f}us "
            f"max={samples[-1] / 1000:9.1f}us  ~{1e6 / mean:12,.0f} calls/s"
        )
        return samples

    def direct() -> None:
        noop_tool(action=_NOOP_ACTION)

    print(f"agent-governance-toolkit-core {agt_version()}, N={n}")
    run(direct, "direct no-op")
    for label, allow_all in (("govern() one-rule policy", False), ("govern() allow-all policy", True)):
        call = make_agt_governed_noop(allow_all=allow_all)
        run(call, label)
        assert agt_audit_entries(call) == n + min(1000, n) + 1
        assert agt_audit_verify(call)
    with tempfile.TemporaryDirectory() as d:
        call = make_agt_governed_noop(durable_path=f"{d}/agt-audit.jsonl")
        run(call, "govern() + FileAuditSink (no fsync)")
        assert agt_audit_entries(call) == n + min(1000, n) + 1
        assert agt_audit_verify(call)
        print("features:", agt_features(call))


if __name__ == "__main__":  # pragma: no cover
    _measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
