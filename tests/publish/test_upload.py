"""The upload path through its seam (an HfApi stand-in): exact calls, the staged folder it is given, the token.

Nothing here reaches the Hub: the machine has no route to it. The real `huggingface_hub` is exercised only for its
version/signature check and its token lookup.
"""

import hashlib
import types
from pathlib import Path

import pytest

from pipeline.errors import PublishError
from pipeline.publish import upload as up
from pipeline.publish.config import PublishConfig
from pipeline.publish.job import run_publish

TOKEN = "hf_" + "S3cretT0kenValue" * 2


class RecordingApi:
    """Records every call; snapshots the folder given to upload_folder (it is a temporary one)."""

    def __init__(self, fail_with: Exception | None = None):
        self.calls, self.uploaded, self.fail_with = [], None, fail_with

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        if self.fail_with:
            raise self.fail_with

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        self.uploaded = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", kw))
        return types.SimpleNamespace(commit_url="https://huggingface.co/datasets/x/commit/abc")


def _tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.ray
@pytest.mark.parametrize("private, revision", [(True, "v1"), (False, None)])
def test_upload_gets_exactly_the_staged_folder(shard_root, staged, private, revision, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    api = RecordingApi()
    result = run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/tiny-logits", private=private,
                                       revision=revision), api=api)
    assert api.uploaded == _tree(staged)  # what --stage-only writes is what goes up
    create, *branch, (name, kw) = api.calls
    assert create == ("create_repo", "my-org/tiny-logits", {"repo_type": "dataset", "exist_ok": True,
                                                             "visibility": "private" if private else None})
    assert branch == ([("create_branch", "my-org/tiny-logits", {"branch": "v1", "repo_type": "dataset",
                                                                "exist_ok": True})] if revision else [])
    assert name == "upload_folder" and kw["repo_id"] == "my-org/tiny-logits" and kw["repo_type"] == "dataset"
    assert kw["revision"] == revision and ".tmp-*" in kw["ignore_patterns"]
    assert result.url == "https://huggingface.co/datasets/x/commit/abc"
    assert not Path(kw["folder_path"]).exists()  # the temporary staging is gone
    assert not any(TOKEN.encode() in p.read_bytes() for p in staged.rglob("*") if p.is_file())


def test_hub_errors_are_named_and_never_show_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (tmp_path / "README.md").write_text("card")
    api = RecordingApi(fail_with=RuntimeError(f"403 Forbidden for token {TOKEN} on my-org/x"))
    with pytest.raises(PublishError) as e:
        up.upload(tmp_path, "my-org/x", api=api)
    assert "upload of" in str(e.value) and "'my-org/x' failed" in str(e.value) and "rerunning resumes" in str(e.value)
    assert TOKEN not in str(e.value) and "token *** on" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_missing_token_and_old_hub_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token either
    with pytest.raises(PublishError, match="no Hugging Face token found: set HF_TOKEN or run `hf auth login`"):
        up.upload(tmp_path, "my-org/x")
    import huggingface_hub

    assert up.check_hub() is huggingface_hub  # the installed one is new enough
    old = types.SimpleNamespace(__version__="0.36.0", HfApi=huggingface_hub.HfApi)
    with pytest.raises(PublishError, match=r"huggingface_hub 0.36.0 is too old: .*>= 1.0"):
        up.check_hub(old)

    class NoVisibility:
        def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False): ...

    with pytest.raises(PublishError, match="huggingface_hub 1.0.0 is too old"):
        up.check_hub(types.SimpleNamespace(__version__="1.0.0", HfApi=NoVisibility))


class LargeFolderApi(RecordingApi):
    """huggingface_hub 1.x: has upload_large_folder (resumable, many commits; no commit message, returns None)."""

    def upload_large_folder(self, **kw):
        folder = Path(kw["folder_path"])
        self.uploaded = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_large_folder", kw))


def test_upload_large_folder_when_the_hub_has_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (tmp_path / "README.md").write_text("card")
    api = LargeFolderApi()
    url = up.upload(tmp_path, "my-org/x", revision="v2", commit_message="ignored by upload_large_folder", api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_large_folder"]
    assert api.calls[-1][1] == {"repo_id": "my-org/x", "folder_path": str(tmp_path), "repo_type": "dataset",
                                "revision": "v2", "ignore_patterns": up.IGNORE}
    assert api.uploaded == {"README.md"} and url == "https://huggingface.co/datasets/my-org/x/tree/v2"
    assert up.check_resumable(api) is None
    # huggingface_hub 2.x has no upload_large_folder: upload_folder is its resumable upload when hf_xet is there
    import huggingface_hub

    assert hasattr(huggingface_hub.HfApi, "upload_large_folder") or hasattr(huggingface_hub.HfApi, "upload_folder")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "hf_xet is not installed" in up.check_resumable(RecordingApi())
    up.upload(tmp_path, "my-org/x", api=RecordingApi())
    assert "publish: hf_xet is not installed" in capsys.readouterr().out
