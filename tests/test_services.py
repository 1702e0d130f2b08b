"""Local services fail to start with a message that says what to run; the package ships."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

import onceflow
from onceflow.errors import ServiceError
from onceflow.shipping import package_zip
from onceflow.testing.services.hdfs import LocalHdfs
from onceflow.testing.services.s3 import LocalS3


@pytest.mark.parametrize(
    ("service", "target"), [(LocalHdfs, "make hdfs-jars"), (LocalS3, "make s3-jars")]
)
def test_a_service_without_its_jars_names_the_make_target(
    service: type[LocalHdfs] | type[LocalS3], target: str, tmp_path: Path
) -> None:
    with pytest.raises(ServiceError) as caught:
        service(tmp_path / "home", jars=tmp_path / "no-jars").start()
    assert caught.value.error_class == "SERVICE_START_FAILED"
    assert target in str(caught.value)


def test_the_pyfiles_zip_holds_every_module_of_the_package(tmp_path: Path) -> None:
    shipped = package_zip(tmp_path)
    package = Path(onceflow.__file__).parent
    expected = {f"onceflow/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    with zipfile.ZipFile(shipped) as archive:
        assert set(archive.namelist()) == expected
    # the same code gives the same bytes: executors of one app never see two versions
    assert package_zip(tmp_path / "again").read_bytes() == shipped.read_bytes()
