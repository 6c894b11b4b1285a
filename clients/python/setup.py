"""Build hook of haplane-client: generates the gRPC stubs from the repository's proto/ into
haplane_client/_gen/haplane/v1 of the build directory at build time, so that the wheel carries
them and the source tree never does.

The metadata lives in pyproject.toml; this file only adds the generation step to `build_py`,
which every wheel build runs. The proto directory is ../../proto (an in-tree build of
clients/python in the haplane repository), or the directory named by HAPLANE_PROTO_DIR.
"""

import os
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTOS = ("haplane/v1/ha.proto", "haplane/v1/entity.proto")


def proto_root() -> Path:
    root = Path(os.environ.get("HAPLANE_PROTO_DIR") or HERE.parent.parent / "proto")
    missing = [name for name in PROTOS if not (root / name).is_file()]
    if missing:
        raise SystemExit(
            f"haplane-client: {', '.join(missing)} not found under {root}; build in the haplane "
            "repository (pip wheel clients/python) or set HAPLANE_PROTO_DIR"
        )
    return root


def generate(gen: Path) -> None:
    """Runs grpc_tools.protoc over the protos into ``gen``/haplane/v1 and makes the generated
    modules import each other inside the package (protoc writes `from haplane.v1 import x`)."""
    from grpc_tools import protoc  # a build requirement (pyproject.toml)
    import grpc_tools

    root = proto_root()
    out = gen / "haplane" / "v1"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*_pb2*.py"):
        stale.unlink()
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={gen}",
            f"--grpc_python_out={gen}",
            *(str(root / name) for name in PROTOS),
        ]
    )
    if status != 0:
        raise SystemExit(f"haplane-client: grpc_tools.protoc failed with status {status}")
    for module in out.glob("*_pb2*.py"):
        text = module.read_text(encoding="utf-8")
        fixed = re.sub(r"^from haplane\.v1 import ", "from . import ", text, flags=re.MULTILINE)
        fixed = re.sub(r"^import haplane\.v1\.", "from . import ", fixed, flags=re.MULTILINE)
        # The messages' __module__ (pickling, repr): where the module really lives.
        fixed = re.sub(
            r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'haplane\.v1\.(\w+)'",
            r"\1'haplane_client._gen.haplane.v1.\2'",
            fixed,
        )
        module.write_text(fixed, encoding="utf-8")
    for package in (gen, gen / "haplane", out):
        init = package / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ at build time; do not edit."""\n')
    expected = {f"{stem}{suffix}.py" for stem in ("ha_pb2", "entity_pb2") for suffix in ("", "_grpc")}
    found = {module.name for module in out.glob("*_pb2*.py")}
    if expected - found:
        raise SystemExit(f"haplane-client: protoc did not write {sorted(expected - found)}")


class GeneratingBuildPy(build_py):
    """build_py, then the stubs into the build directory (the wheel packs all of it)."""

    def run(self):
        super().run()
        generate(Path(self.build_lib) / "haplane_client" / "_gen")


setup(cmdclass={"build_py": GeneratingBuildPy})
