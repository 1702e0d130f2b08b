"""Remove from a jar folder every artifact that pyspark already ships in pyspark/jars.

Maven copies delta, the Kafka connector and hadoop-aws with all their runtime dependencies;
many of those (Scala, Jackson, Parquet, Netty, the Hadoop client) are on Spark's classpath
already, in the versions Spark was built with. Two versions of one library on one classpath
is a bug waiting to happen, so the copies go and Spark's own stay.

Usage: python jvm/prune_shipped.py FOLDER
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyspark

# artifact-version.jar, where the version starts at the first "-<digit>"
_ARTIFACT = re.compile(r"^(?P<artifact>.+?)-\d[^/]*\.jar$")


def artifact_name(jar: Path) -> str:
    match = _ARTIFACT.match(jar.name)
    return match.group("artifact") if match else jar.stem


def main(folder: Path) -> int:
    shipped = {artifact_name(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    removed = [jar for jar in sorted(folder.glob("*.jar")) if artifact_name(jar) in shipped]
    for jar in removed:
        jar.unlink()
    kept = sorted(folder.glob("*.jar"))
    size_mb = sum(j.stat().st_size for j in kept) / 1e6
    print(
        f"{folder}: kept {len(kept)} jar(s), {size_mb:.0f} MB; removed {len(removed)} "
        "that pyspark already ships"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
