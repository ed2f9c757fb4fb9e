"""Upload a staged folder as a Hub dataset repo with huggingface_hub (create_repo + upload_folder).

``upload_folder`` hashes every file and skips those the repo already holds, so a rerun after an interrupted upload
sends only what is missing. The token comes from huggingface_hub's usual places (``HF_TOKEN``, then the token file
that ``hf auth login`` writes) and is never printed: error texts are scrubbed of it.
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
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", revision=revision,
                                 commit_message=commit_message or f"logitfuse publish ({folder.name})",
                                 ignore_patterns=IGNORE)
    except PublishError:
        raise
    except Exception as e:  # network, permission, quota: name the repo, never the token
        raise PublishError(f"upload of {folder} to dataset {repo_id!r} failed: "
                           f"{_scrub(f'{type(e).__name__}: {e}', token)}; rerunning resumes (files already "
                           f"uploaded are skipped)") from None
    return str(getattr(info, "commit_url", None) or info)
