"""Object-store access (gradcam_cli/storage.py): ``file://`` URIs are local paths, other schemes go
to pyarrow."""

from __future__ import annotations


def test_file_uris_are_local_paths_and_other_schemes_go_to_pyarrow(tmp_path):
    from gradcam_cli.outputs import OutputFolder
    from gradcam_cli.storage import is_uri, local_path

    assert local_path(f"file://{tmp_path}/a%20b") == f"{tmp_path}/a b" and not is_uri(f"file://{tmp_path}")
    assert is_uri("s3://bucket/key") and is_uri("gs://bucket") and not is_uri("photos/s3:x")
    folder = OutputFolder(f"file://{tmp_path}/out")
    assert folder.local == tmp_path / "out" and folder.path_of("a.jpg") == str(tmp_path / "out" / "a.jpg")
