"""Publish iterations to the Hugging Face Hub: one repository per iteration, weights and card in ONE commit.

Safety, checked for every iteration before anything is created remotely:

- checkpoint: config.json, a tokenizer and readable, complete ``*.safetensors`` files (`checkpoint_problems`);
- results: each pushed iteration needs the required suites; no result shown in its card may be stale (its
  recorded checkpoint fingerprint must equal the checkpoint's current one);
- overwrite: if the repository already has a card whose figures (table cells, model-index) differ from the new
  card, the push is refused unless ``force``;
- the token comes from ``HF_TOKEN`` or the cached login (``huggingface_hub.get_token``); it is passed to
  ``HfApi`` and never printed, logged or written; error messages are scrubbed of it.

A failed commit leaves the remote as it was (the Hub applies a commit atomically) and the same command can be
rerun: creating the repo and adding the collection item are idempotent, and an iteration whose repo already
carries the tag on a head holding the same card is not committed again. A tag is never moved.
"""

from __future__ import annotations

import contextlib
import logging
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmarks.store import DEFAULT_VARIANT, SUITES, checkpoint_fingerprint, variant_suffix
from sppo.errors import UserError, first_line
from sppo.files import open_regular
from sppo.scrub import register_secret, scrub

from .card import ReleaseInfo, Results, card_figures, find_result, missing_metrics, subset_results
from .data import DataUpload
from .run import MANIFEST_NAME, Iteration

log = logging.getLogger(__name__)

# Files of a checkpoint directory that are not uploaded: ours (the card replaces README.md) and local state.
SKIPPED_FILES = {"README.md", MANIFEST_NAME}


@dataclass
class Upload:
    """What publishing one iteration sends: its repository, card text and checkpoint files."""

    iteration: Iteration
    repo_id: str | None
    card: str
    files: list[Path]


# ------------------------------------------------------------------------------------------------ planning

def parse_release_name(value: str, *, need_org: bool) -> tuple[str | None, str]:
    """``ORG/NAME`` (or ``NAME`` when no org is needed) -> (org, name), checked against Hub naming rules."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    parts = value.split("/")
    if len(parts) > 2 or (need_org and len(parts) != 2) or not all(parts):
        raise UserError(f"invalid repository name {value!r}: expected ORG/NAME, e.g. UCLA-AGI/Mistral7B-PairRM-SPPO")
    try:
        validate_repo_id(value + "-Iter1")
    except HFValidationError as e:
        raise UserError(f"invalid repository name {value!r}: {first_line(e)}") from None
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def checkpoint_files(checkpoint: Path | None) -> list[Path]:
    """Top-level regular files of a checkpoint directory to upload (weights, config, tokenizer). A symbolic link
    there is refused with one line (it could publish any file of this machine); subdirectories are not uploaded."""
    if checkpoint is None or not checkpoint.is_dir():
        return []
    files = []
    for f in sorted(checkpoint.iterdir()):
        if f.name.startswith(".") or f.name in SKIPPED_FILES:
            continue
        if f.is_symlink():
            raise UserError(f"{f}: is a symbolic link; a release uploads only the checkpoint's own regular files "
                            "(copy the file in place of the link, or remove it)")
        if stat.S_ISREG(f.lstat().st_mode):
            files.append(f)
    return files


def plan_uploads(release: ReleaseInfo, targets: Iterable[Iteration], cards: dict[int, Any]) -> list[Upload]:
    return [Upload(it, release.repo_id(it), str(cards[it.number]), checkpoint_files(it.checkpoint))
            for it in targets]


SUBSET_FLAG = "--allow-subset-results"


def result_problems(iterations: list[Iteration], targets: list[Iteration], results: Results,
                    require: Iterable[str] = SUITES, allow_subset: bool = False) -> list[str]:
    """Why the cards of `targets` must not be pushed: figures from a subset of a benchmark (``--limit``; unless
    `allow_subset`, the user's explicit ``--allow-subset-results``), required suites missing for a target, a figure
    the cards would print as n/a, or a result shown in the cards (any iteration's) computed on another state of the
    checkpoint than the current one."""
    problems = [] if allow_subset else [f"{p}; pass {SUBSET_FLAG} to publish them, marked as such"
                                        for p in subset_results(results)]
    for it in targets:
        if not results.get(it.number):
            problems.append(f"{it.name}: no benchmark results")
            continue
        for suite in require:
            if find_result(results, it.number, suite, DEFAULT_VARIANT) is None:
                problems.append(f"{it.name}: {suite} results missing")
    problems += missing_metrics(results)
    for it in iterations:
        current = checkpoint_fingerprint(it.checkpoint) if it.checkpoint is not None else None
        if current is None:
            continue  # no local checkpoint to compare with
        for r in results.get(it.number, []):
            recorded = (r.checkpoint or {}).get("fingerprint")
            what = f"{it.name}: {r.suite}{variant_suffix(r.variant)}"
            if not recorded:
                problems.append(f"{what} results record no checkpoint fingerprint")
            elif recorded != current:
                problems.append(f"{what} results are stale (checkpoint changed since; rerun sppo-bench)")
    return problems


def checkpoint_problems(targets: Iterable[Iteration]) -> list[str]:
    """Why a target's checkpoint must not be published: incomplete (no config.json or tokenizer) or a corrupt or
    truncated ``*.safetensors`` file — the checks sppo-train makes before loading a model."""
    from sppo.models import check_checkpoint

    problems = []
    for it in targets:
        if it.checkpoint is None or not it.checkpoint.is_dir():
            continue
        try:
            check_checkpoint(it.checkpoint)
        except UserError as e:
            problems.append(f"{it.name}: {e}")
    return problems


# ------------------------------------------------------------------------------------------------ the token

def resolve_token() -> str:
    """The Hub token from ``HF_TOKEN`` or the cached login; never shown."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    register_secret(token)
    return token


def hub_error(what: str, token: str, e: BaseException) -> UserError:
    """A one-line UserError for a failed Hub request, without the token."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    status = _http_status(e)
    detail = lines[0] if lines else ""
    if status is not None and getattr(getattr(e, "response", None), "status_code", None) is None:
        # huggingface_hub wraps a server error in LocalEntryNotFoundError: the Hub answered, say what
        detail = f"the Hub answered HTTP {status} ({_root_cause(e)})"
    elif status is None and _is_network_error(e):
        detail = f"network error, cannot reach the Hub ({_root_cause(e)})"
    elif status is None:  # not an HTTP error: the exception type tells what happened
        detail = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
    hint = " (check that your token may write to this namespace)" if status in (401, 403) else ""
    register_secret(token)
    return UserError(scrub(f"{what} failed: {detail}{hint}"))


def hub_call(what: str, token: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one Hub request; any failure becomes a one-line UserError without the token."""
    try:
        return fn(*args, **kwargs)
    except UserError:
        raise
    except Exception as e:  # HTTP errors, connection errors, offline mode, invalid metadata...
        raise hub_error(what, token, e) from None


def _causes(e: BaseException) -> list[BaseException]:
    chain = [e]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    return chain


def _http_status(e: BaseException) -> int | None:
    """The HTTP status of the first response in the exception's chain, if the Hub answered at all."""
    for c in _causes(e):
        status = getattr(getattr(c, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _is_network_error(e: BaseException) -> bool:
    """Connection refused, DNS failure, timeout... (huggingface_hub wraps them in LocalEntryNotFoundError)."""
    names = {t.__name__ for c in _causes(e) for t in type(c).__mro__}
    return bool(names & {"TransportError", "ConnectError", "TimeoutException", "LocalEntryNotFoundError",
                         "OfflineModeIsEnabled", "ConnectionError"})


def _root_cause(e: BaseException) -> str:
    root = _causes(e)[-1]
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    return lines[0] if lines else type(root).__name__


# ------------------------------------------------------------------------------------------------ remote state

def remote_card(api: Any, repo_id: str, token: str, repo_type: str = "model") -> str | None:
    """The README.md currently on the Hub, or None when the repository or the file does not exist."""
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    def fetch() -> str | None:
        with tempfile.TemporaryDirectory() as cache:
            try:
                path = api.hf_hub_download(repo_id, "README.md", cache_dir=cache, repo_type=repo_type)
            except (RepositoryNotFoundError, RemoteEntryNotFoundError):
                return None
            return Path(path).read_text(encoding="utf-8")

    return hub_call(f"reading the model card of {repo_id}", token, fetch)


def remote_refs(api: Any, repo_id: str, token: str) -> tuple[str | None, dict[str, str]]:
    """(head commit of main, ``{tag: commit}``) of a repository; (None, {}) when it does not exist yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    def fetch() -> tuple[str | None, dict[str, str]]:
        try:
            refs = api.list_repo_refs(repo_id)
        except RepositoryNotFoundError:
            return None, {}
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        return head, {t.name: t.target_commit for t in refs.tags}

    return hub_call(f"reading the tags of {repo_id}", token, fetch)


def overwrite_problem(repo_id: str, remote: str | None, new: str) -> str | None:
    """Why replacing `remote` by `new` would change or drop a published figure, or None. Figures the new card
    adds (e.g. a model-index on a hand-written card, a new iteration's row) change nothing published."""
    if remote is None:
        return None
    old_figures, new_figures = card_figures(remote), card_figures(new)
    changed = sorted(k for k in old_figures if new_figures.get(k) != old_figures[k])
    if not changed:
        return None
    k = changed[0]
    return (f"{repo_id}: the model card on the Hub shows other numbers ({len(changed)} figure(s) differ, e.g. "
            f"{k}: {old_figures[k]} -> {new_figures.get(k, '(removed)')}); pass --force to overwrite it")


# ------------------------------------------------------------------------------------------------ publishing

def _commit_description(upload: Upload) -> str:
    fp = checkpoint_fingerprint(upload.iteration.checkpoint) if upload.iteration.checkpoint else None
    return (f"Weights of {upload.iteration.name} and its model card, published by sppo-release."
            + (f"\n\nCheckpoint fingerprint: {fp}" if fp else ""))


def tag_commit(api: Any, repo_id: str, tag: str, oid: str, token: str) -> None:
    """Tag `oid`; an existing tag is fine only if it already points there (a rerun), never moved."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_tag(repo_id, tag=tag, revision=oid)
    except HfHubHTTPError as e:
        if getattr(e.response, "status_code", None) != 409:
            raise hub_error(f"tagging {repo_id}", token, e) from None
        refs = hub_call(f"reading the tags of {repo_id}", token, api.list_repo_refs, repo_id)
        current = next((t.target_commit for t in refs.tags if t.name == tag), None)
        if current != oid:
            raise UserError(f"{repo_id}: tag {tag!r} already exists on commit {str(current)[:12]}; "
                            f"choose another --tag or delete that tag") from None
    except Exception as e:
        raise hub_error(f"tagging {repo_id}", token, e) from None
    log.info("%s: tagged %s as %s", repo_id, oid[:12], tag)


def push_one(api: Any, upload: Upload, token: str, *, tag: str | None = None,
             collection: str | None = None) -> str:
    """Create the repo, commit weights + card in one commit, then tag it and add it to a collection.
    Returns the commit id."""
    from huggingface_hub import CommitOperationAdd

    repo_id = upload.repo_id
    hub_call(f"creating {repo_id}", token, api.create_repo, repo_id, exist_ok=True)
    with contextlib.ExitStack() as opened:  # each file opened without following a link put there since planning
        operations = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=opened.enter_context(open_regular(f)))
                      for f in upload.files]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=upload.card.encode("utf-8")))
        info = hub_call(f"committing to {repo_id}", token, api.create_commit, repo_id, operations,
                        commit_message=f"Release {upload.iteration.name}: weights and model card",
                        commit_description=_commit_description(upload))
    log.info("%s: committed %d file(s) in commit %s", repo_id, len(operations), info.oid)
    if tag:
        tag_commit(api, repo_id, tag, info.oid, token)
    if collection:
        add_to_collection(api, repo_id, collection, token)
    return info.oid


def add_to_collection(api: Any, repo_id: str, collection: str, token: str, item_type: str = "model") -> None:
    hub_call(f"adding {repo_id} to collection {collection}", token, api.add_collection_item, collection,
             item_id=repo_id, item_type=item_type, exists_ok=True)
    log.info("%s: in collection %s", repo_id, collection)


def push_data(api: Any, upload: DataUpload, token: str, *, collection: str | None = None) -> str | None:
    """Commit one iteration's dataset (both splits and its card) in one commit; None when the Hub already holds
    this very card (whose rows fingerprint makes it hold the same rows)."""
    from huggingface_hub import CommitOperationAdd

    repo_id = upload.repo_id
    if remote_card(api, repo_id, token, repo_type="dataset") == upload.card:
        return None
    hub_call(f"creating dataset {repo_id}", token, api.create_repo, repo_id, repo_type="dataset", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in upload.files.items()]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=upload.card.encode("utf-8")))
    info = hub_call(f"committing to dataset {repo_id}", token, api.create_commit, repo_id, operations,
                    repo_type="dataset", commit_message=f"Scored synthetic data of {upload.iteration.name}",
                    commit_description=f"{upload.rows} train rows, {upload.test_rows} test rows; sppo-release.")
    log.info("dataset %s: committed %d file(s) in commit %s", repo_id, len(operations), info.oid)
    if collection:
        add_to_collection(api, repo_id, collection, token, item_type="dataset")
    return info.oid


def publish(uploads: list[Upload], *, tag: str | None = None, collection: str | None = None,
            force: bool = False, endpoint: str | None = None,
            data: list[DataUpload] | None = None) -> dict[str, str | None]:
    """Push every upload after checking all of them; returns ``{repo_id: commit id}`` (None: already
    published, nothing committed). The iterations' datasets (`data`) go first, so that a model card's link
    to its dataset never points at nothing."""
    from huggingface_hub import HfApi

    if any(u.repo_id is None for u in [*uploads, *(data or [])]):
        raise UserError("no repository name: pass --push ORG/NAME")
    token = resolve_token()
    api = HfApi(endpoint=endpoint, token=token)
    todo, done, problems = [], [], []
    for u in uploads:
        remote = remote_card(api, u.repo_id, token)
        if tag and _already_tagged(api, u, tag, remote, token):
            done.append(u)
            continue
        if p := overwrite_problem(u.repo_id, remote, u.card):
            problems.append(p)
        todo.append(u)
    if problems and not force:
        raise UserError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    for p in problems:
        log.warning("--force: %s", p.split("; pass --force")[0])
    published: dict[str, str | None] = {}
    for d in data or []:
        published[d.repo_id] = push_data(api, d, token, collection=collection)
    for u in done:  # a rerun after a partial failure: finish what the first run may have left out
        log.info("%s: already published with tag %s; not committing again", u.repo_id, tag)
        if collection:
            add_to_collection(api, u.repo_id, collection, token)
        published[u.repo_id] = None
    for u in todo:
        published[u.repo_id] = push_one(api, u, token, tag=tag, collection=collection)
    return published


def _already_tagged(api: Any, upload: Upload, tag: str, remote: str | None, token: str) -> bool:
    """True when `tag` already marks the head of the repo and that head holds this very card (a rerun);
    UserError when the tag exists otherwise: a release tag is never moved."""
    head, tags = remote_refs(api, upload.repo_id, token)
    if tag not in tags:
        return False
    if tags[tag] == head and remote == upload.card:
        return True
    raise UserError(f"{upload.repo_id}: tag {tag!r} already exists on another commit; a release tag is never "
                    f"moved: choose another --tag")
