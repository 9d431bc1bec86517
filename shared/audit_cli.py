"""`salvage audit`: the auditor's checks of the ledger from the command line.

Each command prints its verdict and exits 1 when the check fails.
"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from shared.audit import (
    AuditFailure,
    AuditReport,
    LedgerReader,
    audit_batches,
    audit_checkpoint,
    audit_checkpoints,
    audit_entries,
    audit_seals,
    audit_serials,
    load_state,
    replay,
    verify_bundle,
)
from shared.provenance import verify_credit_bundle
from shared.settings import get_settings

console = Console()

audit_app = typer.Typer(
    help="Check the ledger's signed checkpoints, proofs and signatures.",
    no_args_is_help=True,
)

LedgerUrl = Annotated[
    str | None,
    typer.Option("--ledger-url", help="Ledger base URL (default SALVAGE_LEDGER_URL)."),
]
StateFile = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        help="Where the last accepted checkpoint is remembered "
        "(default <data dir>/audit/witness.json).",
    ),
]
VerifierKey = Annotated[
    str | None,
    typer.Option("--key", help="Pin the log's verifier key (name+id+key)."),
]
TrustBundleKey = Annotated[
    bool,
    typer.Option(
        "--trust-bundle-key",
        help="With no --key and no pinned key in the state file, trust the key "
        "inside the bundle. Anyone can re-sign a bundle with a key of their own, "
        "so this proves only that the bundle is self-consistent.",
    ),
]


def _url(ledger_url: str | None) -> str:
    return ledger_url or get_settings().ledger_url


def _state(state_file: Path | None) -> Path:
    return state_file or get_settings().data_dir / "audit" / "witness.json"


def _finish(report: AuditReport) -> None:
    """Prints a report and exits non-zero when it failed."""
    where = f" at size {report.size}" if report.size is not None else ""
    if report.ok:
        counted = f"{report.checked} checked, " if report.checked else ""
        console.print(
            f"[bold green]PASS[/] {report.check}{where}: {counted}root {report.root}"
        )
    else:
        index = (
            f" at index {report.first_bad_index}"
            if report.first_bad_index is not None
            else ""
        )
        console.print(
            f"[bold red]FAIL[/] {report.check}{where}{index}: {report.reason}"
        )
    for note in report.notes:
        console.print(f"  note: {note}")
    raise typer.Exit(code=0 if report.ok else 1)


@audit_app.command()
def checkpoint(
    ledger_url: LedgerUrl = None, state_file: StateFile = None, key: VerifierKey = None
) -> None:
    """Verify the latest checkpoint's signature and its consistency with the
    last checkpoint this auditor accepted."""
    _finish(
        audit_checkpoint(
            _url(ledger_url), state_file=_state(state_file), verifier_key=key
        )
    )


@audit_app.command("checkpoints")
def checkpoints_command(
    ledger_url: LedgerUrl = None, state_file: StateFile = None, key: VerifierKey = None
) -> None:
    """Verify every past checkpoint: signatures across key rotations, listed
    roots, consistency of each with the one before, and the remembered one."""
    _finish(
        audit_checkpoints(
            _url(ledger_url), state_file=_state(state_file), verifier_key=key
        )
    )


@audit_app.command()
def entries(
    index: Annotated[list[int], typer.Option("--index", help="Entry index.")],
    ledger_url: LedgerUrl = None,
    state_file: StateFile = None,
    key: VerifierKey = None,
) -> None:
    """Prove that the named entries are included in the signed log."""
    _finish(
        audit_entries(
            _url(ledger_url), index, state_file=_state(state_file), verifier_key=key
        )
    )


@audit_app.command()
def seals(
    index: Annotated[list[int], typer.Option("--index", help="Seal entry index.")],
    ledger_url: LedgerUrl = None,
    state_file: StateFile = None,
    key: VerifierKey = None,
) -> None:
    """Verify seals: inclusion, the ledger's signature and their chains."""
    _finish(audit_seals(_url(ledger_url), index, _state(state_file), verifier_key=key))


@audit_app.command()
def batch(
    batch_ids: Annotated[list[str], typer.Argument(help="Batch IDs.")],
    ledger_url: LedgerUrl = None,
    state_file: StateFile = None,
    key: VerifierKey = None,
) -> None:
    """Verify the seal of each batch and every entry of its chain."""
    _finish(
        audit_batches(
            _url(ledger_url), batch_ids, state_file=_state(state_file), verifier_key=key
        )
    )


@audit_app.command()
def serial(
    serials: Annotated[list[str], typer.Argument(help="Credit serials.")],
    trading_url: Annotated[
        str | None,
        typer.Option("--trading-url", help="Trading base URL (default from settings)."),
    ] = None,
    ledger_url: LedgerUrl = None,
    state_file: StateFile = None,
    key: VerifierKey = None,
) -> None:
    """Verify every seal behind each credit serial, as trading's provenance
    names them: inclusion, the ledger's signature and each seal's chain."""
    _finish(
        audit_serials(
            _url(ledger_url),
            trading_url or get_settings().trading_url,
            serials,
            state_file=_state(state_file),
            verifier_key=key,
        )
    )


@audit_app.command()
def export(
    batch_id: Annotated[str, typer.Argument(help="Batch ID.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file.")],
    ledger_url: LedgerUrl = None,
) -> None:
    """Save a batch's offline proof bundle to a file."""
    bundle = LedgerReader(_url(ledger_url)).bundle(batch_id)
    output.write_text(json.dumps(bundle, indent=2) + "\n")
    console.print(f"bundle of batch {batch_id} written to {output}")


def _read_bundle(file: Path, check: str) -> dict:
    """Reads a saved bundle, or prints why it cannot and exits 1."""
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        console.print(f"[bold red]FAIL[/] {check}: cannot read {file}: {exc}")
        raise typer.Exit(code=1) from exc
    if not isinstance(content, dict):
        console.print(f"[bold red]FAIL[/] {check}: the file is not a bundle")
        raise typer.Exit(code=1)
    return content


def _bundle_key(
    check: str, key: str | None, state_file: Path | None, *, trust_bundle_key: bool
) -> str | None:
    """The log key a bundle must verify with: --key, else the key this
    auditor's state file pins; None (the bundle's own) only when asked."""
    if key:
        return key
    path = _state(state_file)
    try:
        state = load_state(path)
    except AuditFailure as failure:
        console.print(f"[bold red]FAIL[/] {check}: {failure.reason}")
        raise typer.Exit(code=1) from failure
    if state is not None:
        console.print(
            f"  log key pinned in {path}: {state.verifier_key}", soft_wrap=True
        )
        return state.verifier_key
    if trust_bundle_key:
        console.print(
            "[bold yellow]WARNING[/] trusting the verifier key inside the bundle: "
            "anyone can re-sign a bundle with a key of their own, so a PASS says "
            "nothing about the real log. Pin the log's key with --key."
        )
        return None
    console.print(
        f"[bold red]FAIL[/] {check}: no log key to verify with. Pass --key with "
        "the verifier key obtained out of band (GET /v1/key on a ledger you "
        f"trust), or pin it in {path} with `salvage audit checkpoint`; "
        "--trust-bundle-key uses the bundle's own key, which proves nothing."
    )
    raise typer.Exit(code=1)


@audit_app.command()
def bundle(
    file: Annotated[Path, typer.Argument(help="A bundle saved by `export`.")],
    key: VerifierKey = None,
    state_file: StateFile = None,
    trust_bundle_key: TrustBundleKey = False,
) -> None:
    """Verify a batch's offline proof bundle with no network, against the
    log key given with --key or pinned in the state file."""
    content = _read_bundle(file, "bundle")
    pinned = _bundle_key("bundle", key, state_file, trust_bundle_key=trust_bundle_key)
    _finish(verify_bundle(content, verifier_key=pinned))


@audit_app.command("credit-bundle")
def credit_bundle(
    file: Annotated[
        Path,
        typer.Argument(help="A bundle from trading's /v1/credits/{serial}/bundle."),
    ],
    key: VerifierKey = None,
    state_file: StateFile = None,
    trust_bundle_key: TrustBundleKey = False,
) -> None:
    """Verify a credit serial's provenance bundle with no network: issuance,
    every seal and custody entry behind it, the quantification and the
    retirements, each proven against the bundle's signed checkpoint and the
    log key given with --key or pinned in the state file."""
    content = _read_bundle(file, "credit-bundle")
    pinned = _bundle_key(
        "credit-bundle", key, state_file, trust_bundle_key=trust_bundle_key
    )
    _finish(verify_credit_bundle(content, verifier_key=pinned))


@audit_app.command("replay")
def replay_command(
    ledger_url: LedgerUrl = None,
    state_file: StateFile = None,
    key: VerifierKey = None,
    signatures: Annotated[
        bool,
        typer.Option("--signatures", help="Also re-verify every entry's signatures."),
    ] = False,
    proofs: Annotated[
        bool,
        typer.Option("--proofs", help="Also check every entry's inclusion proof."),
    ] = False,
) -> None:
    """Stream the whole log and recompute its root against the checkpoint."""
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("replaying", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = replay(
            _url(ledger_url),
            state_file=_state(state_file),
            verifier_key=key,
            progress=advance,
            signatures=signatures,
            proofs=proofs,
        )
    _finish(report)
