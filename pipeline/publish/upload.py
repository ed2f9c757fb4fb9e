"""Upload a staged folder as a Hub dataset repo with huggingface_hub: create_repo, then a resumable upload.

Multi-GB sets must survive an interrupted upload. huggingface_hub 1.x has ``upload_large_folder`` for that (many
commits, resumable from a local cache in the folder; it cannot take a commit message, and returns nothing): used
whenever the installed ``HfApi`` has it. huggingface_hub 2.x dropped it: its ``upload_folder`` is the resumable,
multi-commit upload itself when ``hf_xet`` is installed (a rerun skips committed files, deduplicates uploaded
data), one commit without it (``check_resumable`` says so). ``publish`` stages into a fresh temporary folder each run,
so what a rerun skips comes from the Hub side (committed files, uploaded LFS/xet data), not from a local cache
(``upload_large_folder`` keeps one inside the folder, lost with it). The token comes from huggingface_hub's usual places
(``HF_TOKEN``, then the token file that ``hf auth login`` writes) and is never printed: error texts are scrubbed of
it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pipeline.errors import PublishError

MIN_HUB = (1, 0)  # create_repo(visibility=…) and the 1.x upload API
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"^{_PART}/{_PART}$")
IGNORE = [".tmp-*", "**/.tmp-*"]  # leftovers of an interrupted staging never go up


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub allows it; PublishError saying what is wrong otherwise."""
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id \
            or repo_id.endswith(".git"):
        raise PublishError(f"repo id {repo_id!r} is not ORG/NAME (letters, digits, '.', '_', '-'; no '--' or "
                           f"'..'; up to 96 characters each), e.g. my-org/tiny-logits")
    return repo_id


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def check_hub(module=None):
    """The huggingface_hub module, or PublishError when it is missing or older than the API used here."""
    if module is None:
        try:
            import huggingface_hub as module
        except ImportError:
            raise PublishError("publishing needs huggingface_hub: pip install 'huggingface_hub>=1.0'") from None
    have = getattr(module, "__version__", "0")
    if _version(have) < MIN_HUB or "visibility" not in inspect.signature(module.HfApi.create_repo).parameters:
        raise PublishError(f"huggingface_hub {have} is too old: logitfuse publish needs >= "
                           f"{'.'.join(map(str, MIN_HUB))} (pip install -U 'huggingface_hub>=1.0')")
    return module


def check_resumable(api) -> str | None:
    """Why an upload through ``api`` would not resume after an interruption (None when it would)."""
    if hasattr(api, "upload_large_folder"):
        return None
    import importlib.util

    if importlib.util.find_spec("hf_xet") is None:
        return ("hf_xet is not installed: huggingface_hub uploads the folder as one commit, which an interruption "
                "loses (pip install hf_xet)")
    return None


def _scrub(text: str, token: str | None) -> str:
    text = text.replace(token, "***") if token else text
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)  # any token-shaped string


def upload(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
           commit_message: str | None = None, api=None) -> str:
    """Create the dataset repo (if needed), the branch ``revision`` (if needed), upload ``folder``; the commit URL.

    ``api`` is an ``HfApi``-like object (tests pass a recording one); by default a real ``HfApi``.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    hub = check_hub()
    token = hub.get_token()  # only to scrub it from error texts when api is given
    if api is None:
        if not token:
            raise PublishError("no Hugging Face token found: set HF_TOKEN or run `hf auth login` (a token with "
                               "write access to the organisation)")
        api = hub.HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True, visibility="private" if private else None)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        if hasattr(api, "upload_large_folder"):  # huggingface_hub 1.x: no commit message, returns None
            api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset",
                                    revision=revision, ignore_patterns=IGNORE)
            info = f"https://huggingface.co/datasets/{repo_id}/tree/{revision or 'main'}"
        else:
            if why := check_resumable(api):
                print(f"publish: {why}")
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset",
                                     revision=revision, ignore_patterns=IGNORE,
                                     commit_message=commit_message or f"logitfuse publish ({folder.name})")
    except PublishError:
        raise
    except Exception as e:  # network, permission, quota: name the repo, never the token
        raise PublishError(f"upload of {folder} to dataset {repo_id!r} failed: "
                           f"{_scrub(f'{type(e).__name__}: {e}', token)}; rerunning resumes (files already "
                           f"uploaded are skipped)") from None
    return str(getattr(info, "commit_url", None) or info)
