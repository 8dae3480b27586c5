"""Command line for policies and the file approval queue.

    python -m govtrace.instrumentation.policy validate POLICY.yaml
    python -m govtrace.instrumentation.policy queue DIR list
    python -m govtrace.instrumentation.policy queue DIR approve ESCALATION_ID --approver alice --role team-lead
    python -m govtrace.instrumentation.policy queue DIR deny ESCALATION_ID --approver alice --role team-lead
    python -m govtrace.instrumentation.policy bench [N]
"""

from __future__ import annotations

import argparse
import json
import sys

from govtrace.instrumentation.policy.loader import PolicyLoadError, load_policy
from govtrace.instrumentation.policy.oversight import FileQueueApprovalHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govtrace.instrumentation.policy")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="load a policy file and print its id, version and agents")
    v.add_argument("policy")
    q = sub.add_parser("queue", help="read and answer a file approval queue")
    q.add_argument("directory")
    q.add_argument("action", choices=["list", "approve", "deny", "notices"])
    q.add_argument("escalation_id", nargs="?")
    q.add_argument("--approver", help="the approver's identity (required to answer)")
    q.add_argument("--role", help="the approver's role")
    q.add_argument("--comment")
    b = sub.add_parser("bench", help="median µs per tool call: span + policy, export excluded")
    b.add_argument("n", nargs="?", type=int, default=20_000)
    args = parser.parse_args(argv)

    if args.command == "validate":
        try:
            policy = load_policy(args.policy)
        except PolicyLoadError as exc:
            print(f"invalid policy: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"id": policy.policy_id, "version": policy.version, "sha256": policy.digest,
                          "agents": sorted(policy.agents)}, indent=2))
        return 0
    if args.command == "bench":
        from govtrace.instrumentation.policy.bench import bench_policy_overhead

        print(json.dumps(bench_policy_overhead(args.n), indent=2))
        return 0
    queue = FileQueueApprovalHandler(args.directory)
    if args.action == "list":
        for request in queue.pending():
            print(json.dumps(request.as_dict(), sort_keys=True))
        return 0
    if args.action == "notices":
        for notice in queue.notices():
            print(json.dumps(notice, sort_keys=True))
        return 0
    if not args.escalation_id or not args.approver:
        parser.error("approve/deny need ESCALATION_ID and --approver")
    try:
        answer = queue.decide(args.escalation_id, approve=args.action == "approve", approver_id=args.approver,
                              approver_role=args.role, comment=args.comment)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    print(json.dumps(answer.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
