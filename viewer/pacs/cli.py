"""``brainsr-pacs``: echo, find, get and send for scripted pipelines (pull → enhance → push), plus the study cache.

Every network command takes ``--node HOST:PORT --aet CALLED_AET`` (DIMSE) or ``--url http://HOST:PORT/PATH``
(DICOMweb), ``--calling-aet`` (default BRAINSR) and ``--timeout`` (default 10 s), and contacts only that node.
Exit 0 on success; on failure one line naming the node and the problem, and a non-zero exit (1: failed, 2: bad
arguments, 130: interrupted). Passwords and tokens may come from ``BRAINSR_PACS_PASSWORD`` / ``BRAINSR_PACS_TOKEN``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from .cache import StudyCache
from .errors import PacsError
from .models import Query
from .nodes import DEFAULT_CALLING_AET, Node, parse_hostport


def _node_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("node (DIMSE: --node and --aet; DICOMweb: --url)")
    g.add_argument("--node", metavar="HOST:PORT", help="DIMSE peer")
    g.add_argument("--aet", metavar="CALLED_AET", help="the node's AE title")
    g.add_argument("--url", metavar="URL", help="DICOMweb root, e.g. http://host:8042/dicom-web")
    g.add_argument("--calling-aet", default=DEFAULT_CALLING_AET, metavar="AET",
                   help="our AE title (default %(default)s)")
    g.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds (default %(default)s)")
    g.add_argument("--tls", action="store_true", help="DICOM over TLS")
    g.add_argument("--tls-ca", default="", metavar="PEM", help="CA that signs the node's certificate")
    g.add_argument("--tls-cert", default="", metavar="PEM", help="our client certificate")
    g.add_argument("--tls-key", default="", metavar="PEM", help="its private key")
    g.add_argument("--user", default="", help="DICOMweb basic-auth user (password: BRAINSR_PACS_PASSWORD)")
    g.add_argument("--token", default="", help="DICOMweb bearer token (or BRAINSR_PACS_TOKEN)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainsr-pacs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    node = _node_options()
    sub.add_parser("echo", parents=[node], help="verify the node (C-ECHO, or a QIDO-RS query)")
    f = sub.add_parser("find", parents=[node], help="find studies and their series")
    f.add_argument("--patient-id", default="")
    f.add_argument("--patient-name", default="", metavar="PATTERN", help="wildcards * and ?")
    f.add_argument("--study-date", default="", metavar="YYYYMMDD[-YYYYMMDD]")
    f.add_argument("--modality", default="")
    f.add_argument("--accession", default="", metavar="N")
    f.add_argument("--description", default="", metavar="PATTERN", help="study description, wildcards * and ?")
    f.add_argument("--study", default="", metavar="UID", help="one study by its Study Instance UID")
    f.add_argument("--limit", type=int, default=100, help="at most this many studies (default %(default)s)")
    f.add_argument("--json", action="store_true", help="a JSON list, one object per study with its series")
    g = sub.add_parser("get", parents=[node], help="retrieve a study or series into DIR/<study>/<series>/")
    g.add_argument("--study", required=True, metavar="UID")
    g.add_argument("--series", action="append", metavar="UID", help="only this series (repeatable)")
    g.add_argument("-o", "--output", required=True, metavar="DIR")
    g.add_argument("--move", action="store_true", help="C-MOVE to a storage SCP started here (default: C-GET)")
    g.add_argument("--listen", type=int, metavar="PORT", help="port of that storage SCP")
    g.add_argument("--local-aet", metavar="AET", help="its AE title, as configured on the node (default: the "
                   "calling AE title)")
    g.add_argument("--listen-host", default="0.0.0.0", metavar="ADDR", help="address to listen on (default all)")
    s = sub.add_parser("send", parents=[node], help="send every DICOM file under DIR")
    s.add_argument("path", metavar="DIR")
    c = sub.add_parser("cache", help="the study cache: list it, or clear it")
    c.add_argument("action", choices=["list", "clear"])
    c.add_argument("--study", metavar="UID", help="clear only this study")
    return parser


def node_from_args(args: argparse.Namespace) -> Node:
    if args.url and args.node:
        raise ValueError("give either --node HOST:PORT --aet AET or --url, not both")
    common = {"calling_aet": args.calling_aet, "timeout": args.timeout, "tls_ca": args.tls_ca,
              "tls_cert": args.tls_cert, "tls_key": args.tls_key}
    if args.url:
        return Node(url=args.url, username=args.user, password=os.environ.get("BRAINSR_PACS_PASSWORD", ""),
                    token=args.token or os.environ.get("BRAINSR_PACS_TOKEN", ""), **common)
    if not args.node or not args.aet:
        raise ValueError("which node? give --node HOST:PORT and --aet CALLED_AET, or --url")
    host, port = parse_hostport(args.node)
    return Node(host=host, port=port, aet=args.aet, tls=args.tls, **common)


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from . import service

    if args.command == "cache":
        cache = StudyCache()
        if args.action == "list":
            for study in cache.studies():
                print(f"{study.study_uid}  {len(study.series)} series  {sum(study.series.values())} files  "
                      f"{study.size / 1024**2:.1f} MiB" + (f"  ({study.partial} incomplete)" if study.partial else ""))
            print(f"{cache.root}: {cache.size() / 1024**2:.1f} MiB of {cache.quota / 1024**2:.0f} MiB")
        else:
            cache.clear(args.study)
        return 0
    node = node_from_args(args)
    if args.command == "echo":
        seconds = service.echo(node)
        print(f"{node.label}: OK ({seconds * 1000:.0f} ms)")
    elif args.command == "find":
        query = Query(patient_id=args.patient_id, patient_name=args.patient_name, study_date=args.study_date,
                      modality=args.modality, accession=args.accession, description=args.description,
                      study_uid=args.study, limit=args.limit)
        result = service.find(node, query)
        if args.json:
            print(json.dumps([s.to_json() for s in result.studies], indent=1, ensure_ascii=False))
        else:
            for st in result.studies:
                print(f"{st.study_uid}  {st.patient_id}  {st.study_date}  {'/'.join(st.modalities)}  "
                      f"{st.description}")
                for se in st.series:
                    print(f"    {se.series_uid}  {se.modality}  #{se.number}  {se.n_instances} images  "
                          f"{se.description}")
        if result.truncated:
            print(f"brainsr-pacs: more than {query.limit} studies matched; only the first {query.limit} are shown "
                  "(narrow the query or raise --limit)", file=sys.stderr)
    elif args.command == "get":
        move = None
        if args.move:
            if not args.listen:
                raise ValueError("--move needs --listen PORT (and the node must know our AE title and port)")
            move = (args.local_aet or args.calling_aet, args.listen, args.listen_host)
        out = Path(args.output)
        cancel = threading.Event()
        report = service.retrieve(node, args.study, out, series_uids=args.series, move=move,
                                  progress=_progress(False), cancel=cancel)
        print(f"{node.label}: {report.done} images received, {report.skipped} already present, "
              f"{len(report.folders)} series in {out / args.study}")
    elif args.command == "send":
        report = service.send(node, Path(args.path), progress=_progress(False))
        extra = f" ({'; '.join(report.warnings)})" if report.warnings else ""
        print(f"{node.label}: {report.done} of {report.expected} images sent{extra}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PacsError as exc:
        print(f"brainsr-pacs: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"brainsr-pacs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainsr-pacs: interrupted (run it again to fetch only what is missing)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        print(f"brainsr-pacs: unexpected error: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
