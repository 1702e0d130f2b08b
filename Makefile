# onceflow — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
JARS   := .jars/spark
CDS    := .jars/cds/spark.jsa
KAFKA_JARS := .jars/kafka
HDFS_JARS  := .jars/hdfs
S3_JARS    := .jars/s3proxy
PG_HOME    := .services/postgres
# where Debian's postgresql puts the server programs, and the drop-in folder that keeps its
# install from creating (and, where services start, running) a 'main' cluster on 5432
PG_LIB             ?= /usr/lib/postgresql
PG_CREATECLUSTER_D ?= /etc/postgresql-common/createcluster.d
ENV    ?= local
JOB    ?= jobs/payments.yaml
LINT_DIRS := $(wildcard src tests bench jvm notebooks)

# Spark binds to loopback only: this project never listens on another address.
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(PY)

.PHONY: help setup venv jars cds kafka-jars kafka-up kafka-env kafka-down cluster-up cluster-down cluster-url \
        hdfs-jars hdfs-up hdfs-down hdfs-uri s3-jars s3-up s3-down s3-endpoint \
        pg-install pg-up pg-down pg-env \
        sample run validate lint check test prove lab notebooks test-only bench bench-kafka-sink bench-storage bench-postgres bench-quality clean clean-state

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

setup: venv jars cds kafka-jars hdfs-jars s3-jars pg-install ## create the venv, install onceflow[dev], fetch the JVM jars, install PostgreSQL

venv: $(VENV)/.installed ## create .venv and install onceflow[dev] (editable) and the tests' sink kind
# the tests' own sink kind is a package of its own, registered through its entry point
$(VENV)/.installed: pyproject.toml tests/kinds/jsonl_sink/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q -e tests/kinds/jsonl_sink
	touch $@

jars: $(JARS)/.resolved ## resolve Delta, Kafka connector, hadoop-aws, pgjdbc with Maven into .jars/spark
# resolved into $(JARS).new and swapped in by two renames: a Spark starting meanwhile never
# finds the folder empty, and a failed resolve leaves the old jars in place
$(JARS)/.resolved: jvm/spark/pom.xml jvm/prune_shipped.py $(VENV)/.installed
	@command -v mvn >/dev/null || { echo "need Maven (mvn) on PATH: apt-get install maven"; exit 1; }
	rm -rf $(JARS).new $(JARS).old
	mvn -q -B -f jvm/spark/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS).new
	$(PY) jvm/prune_shipped.py $(JARS).new
	touch $(JARS).new/.resolved
	if [ -d $(JARS) ]; then mv $(JARS) $(JARS).old; fi; mv $(JARS).new $(JARS); rm -rf $(JARS).old

cds: $(CDS) ## dump the class-data-sharing archive of Spark's classes (a driver JVM starts faster)
# a JVM maps it only if it matches its own build and classpath: redone when either changes
$(CDS): $(JARS)/.resolved $(VENV)/.installed
	$(VENV)/bin/onceflow class-sharing --jars-dir $(JARS)

kafka-jars: $(KAFKA_JARS)/.resolved ## resolve the Kafka broker's jars into .jars/kafka
$(KAFKA_JARS)/.resolved: jvm/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "need Maven (mvn) on PATH: apt-get install maven"; exit 1; }
	rm -rf $(KAFKA_JARS)
	mvn -q -B -f jvm/kafka/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_JARS)
	touch $@

hdfs-jars: $(HDFS_JARS)/.resolved ## resolve the HDFS daemons' jars into .jars/hdfs
$(HDFS_JARS)/.resolved: jvm/hdfs/pom.xml
	@command -v mvn >/dev/null || { echo "need Maven (mvn) on PATH: apt-get install maven"; exit 1; }
	rm -rf $(HDFS_JARS)
	mvn -q -B -f jvm/hdfs/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(HDFS_JARS)
	touch $@

s3-jars: $(S3_JARS)/.resolved ## resolve S3Proxy (the local S3 server) into .jars/s3proxy
$(S3_JARS)/.resolved: jvm/s3proxy/pom.xml
	@command -v mvn >/dev/null || { echo "need Maven (mvn) on PATH: apt-get install maven"; exit 1; }
	rm -rf $(S3_JARS)
	mvn -q -B -f jvm/s3proxy/pom.xml dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(S3_JARS)
	touch $@

kafka-up: venv kafka-jars ## start a local Kafka broker (KRaft) on free ports; prints them
	$(PY) -m onceflow.testing.services kafka up --home .services/kafka --jars $(KAFKA_JARS)

kafka-env: ## export line for KAFKA_BOOTSTRAP (the plaintext listener): eval "$(make -s kafka-env)"
	@$(PY) -m onceflow.testing.services kafka env --home .services/kafka

kafka-down: ## stop the local Kafka broker
	$(PY) -m onceflow.testing.services kafka down --home .services/kafka

hdfs-up: venv hdfs-jars ## start a local HDFS (NameNode + DataNode) on free ports; prints the URI
	$(PY) -m onceflow.testing.services hdfs up --home .services/hdfs --jars $(HDFS_JARS)

hdfs-down: ## stop the local HDFS (its files stay in .services/hdfs)
	$(PY) -m onceflow.testing.services hdfs down --home .services/hdfs

hdfs-uri: ## print the running HDFS's URI (for ONCEFLOW_HDFS_URI)
	@$(PY) -c 'import json; print(json.load(open(".services/hdfs/state.json"))["uri"])'

s3-up: venv s3-jars ## start a local S3 endpoint (S3Proxy, bucket 'lake') on a free port
	$(PY) -m onceflow.testing.services s3 up --home .services/s3 --jars $(S3_JARS) --bucket lake

s3-down: ## stop the local S3 endpoint (its objects stay in .services/s3/data)
	$(PY) -m onceflow.testing.services s3 down --home .services/s3

s3-endpoint: ## print the running S3 endpoint (for ONCEFLOW_S3_ENDPOINT)
	@$(PY) -c 'import json; print(json.load(open(".services/s3/state.json"))["endpoint"])'

# Installs only when missing: on a machine that has it, `apt-get install postgresql` would
# upgrade it. sudo drops a `VAR=x sudo cmd` prefix, hence `sudo env VAR=x`.
pg-install: ## install PostgreSQL from Debian's packages when missing (no 'main' cluster on 5432)
	@if [ -n "$$ONCEFLOW_PG_BIN" ] && [ -x "$$ONCEFLOW_PG_BIN/postgres" ]; then \
	  echo "PostgreSQL present: $$ONCEFLOW_PG_BIN/postgres (\$$ONCEFLOW_PG_BIN)"; exit 0; \
	fi; \
	if ls $(PG_LIB)/*/bin/postgres >/dev/null 2>&1; then \
	  echo "PostgreSQL present: $$(ls -d $(PG_LIB)/*/bin/postgres | sort -V | tail -1)"; exit 0; \
	fi; \
	command -v apt-get >/dev/null || { echo "error: no PostgreSQL server under $(PG_LIB) and no apt-get:" \
	  "install a PostgreSQL server and set ONCEFLOW_PG_BIN to its bin folder" >&2; exit 1; }; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	echo "installing PostgreSQL (apt-get install postgresql) ..."; \
	{ $$SUDO mkdir -p $(PG_CREATECLUSTER_D) && \
	  echo 'create_main_cluster = false' | $$SUDO tee $(PG_CREATECLUSTER_D)/onceflow.conf >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; \
	} || { echo "error: apt-get could not install postgresql (output above); fix apt, or install a" \
	  "PostgreSQL server by hand and set ONCEFLOW_PG_BIN to its bin folder" >&2; exit 1; }; \
	ls $(PG_LIB)/*/bin/postgres >/dev/null 2>&1 || { echo "error: apt-get succeeded but there is" \
	  "no $(PG_LIB)/*/bin/postgres" >&2; exit 1; }; \
	echo "PostgreSQL installed: $$(ls -d $(PG_LIB)/*/bin/postgres | sort -V | tail -1)"

pg-up: venv pg-install ## start a local PostgreSQL on a free port (role and db 'onceflow', password from $ONCEFLOW_PG_PASSWORD)
	$(PY) -m onceflow.testing.services postgres up --home $(PG_HOME)

pg-down: ## stop the local PostgreSQL (fast shutdown; its data stays in .services/postgres/data)
	$(PY) -m onceflow.testing.services postgres down --home $(PG_HOME)

pg-env: ## export lines for ONCEFLOW_PG_HOST/PORT/DATABASE/USER: eval "$(make -s pg-env)"
	@$(PY) -m onceflow.testing.services postgres env --home $(PG_HOME)

cluster-up: venv jars ## start a Spark standalone cluster (master + 2 workers) on loopback
	$(PY) -m onceflow.testing.services cluster up --home .services/cluster

cluster-down: ## stop the local Spark standalone cluster
	$(PY) -m onceflow.testing.services cluster down --home .services/cluster

cluster-url: ## print the running cluster's master URL (for SPARK_MASTER_URL)
	@$(PY) -c 'import json; print(json.load(open(".services/cluster/state.json"))["master_url"])'

sample: $(VENV)/.installed ## (re)write the sample input under data/sample/payments
	rm -rf data/sample/payments
	$(VENV)/bin/onceflow sample --out data/sample/payments --records 10000 --files 10

validate: $(VENV)/.installed ## validate JOB (default jobs/payments.yaml) without Spark
	$(VENV)/bin/onceflow validate $(JOB) --env $(ENV)

# starts JOB from nothing: its own checkpoint, tables and quarantine only, never another job's
run: setup ## the default job end to end on fresh sample data; prints output path and rows
	rm -rf data/sample/payments
	$(VENV)/bin/onceflow sample --out data/sample/payments --records 10000 --files 10
	$(VENV)/bin/onceflow reset $(JOB) --env $(ENV) --yes --if-local
	$(VENV)/bin/onceflow run $(JOB) --env $(ENV)

lint: $(VENV)/.installed ## ruff, mypy (strict, src/), import layering
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint test-only ## set up, lint, then the whole pytest suite

# the tests that start no service and kill no process: for iterating, never instead of test
FAST_TESTS := not (kafka or hdfs or s3 or postgres or cluster or chaos or slow)
check: venv jars lint ## the fast tier: lint, then the tests that need no service (minutes)
	$(VENV)/bin/pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

# the slowest tests are listed at the end of every run, CI's included. Two workers
# (pytest-xdist), each taking whole modules (a module's fixtures are set up once): most
# tests wait on a JVM starting or a killed job restarting, so two overlap well on 2 cores.
# The longest modules are collected first (tests/conftest.py LONGEST_FIRST), and kept in
# that order: xdist's default puts the modules with the most tests first instead
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= --durations=20 -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder
test-only: ## the pytest suite alone (assumes setup)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

PROVE_JOBS ?= $(wildcard jobs/payments_*.yaml)
PROVE_JOBS_FILES := $(filter-out jobs/payments_kafka.yaml jobs/payments_postgres.yaml,$(PROVE_JOBS))
PROVE_OUT  ?= state/prove-report
PROVE_ENV  ?= test

prove: setup ## the full prove matrix for the example jobs; report in state/prove-report/
	rm -rf $(PROVE_OUT) && mkdir -p $(PROVE_OUT)
	status=0; start=$$(date +%s); \
	for job in $(PROVE_JOBS_FILES); do \
	  name=$$(basename $$job .yaml); \
	  $(VENV)/bin/onceflow prove $$job --env $(PROVE_ENV) --random-kills 2 --parallel 2 \
	    --crash-points before_write,mid_write,after_write,after_commit,deleted_commit,second_instance,fresh_checkpoint \
	    --work-dir state/prove/$$name --json $(PROVE_OUT)/$$name.json \
	    --markdown $(PROVE_OUT)/$$name.md || { code=$$?; \
	    [ $$code -lt 128 ] || exit $$code; status=1; }; \
	done; \
	cat $(PROVE_OUT)/*.md > $(PROVE_OUT)/REPORT.md; \
	echo "report: $(PROVE_OUT)/REPORT.md ($$(( $$(date +%s) - start ))s)"; exit $$status

LAB_PORT ?= 8888
lab: setup ## JupyterLab (the lab extra) on 127.0.0.1:LAB_PORT with notebooks/ open, in the venv's kernel
	$(PY) -c 'import jupyterlab' 2>/dev/null || $(PY) -m pip install -q -e '.[dev,lab]'
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser --notebook-dir notebooks \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # Jupyter refuses root without it

NOTEBOOK_TIMEOUT ?= 900
notebooks: setup ## run the notebooks headless, all at once; executed copies in state/notebooks/executed/
	$(PY) notebooks/run.py --timeout $(NOTEBOOK_TIMEOUT)

BENCH_ROUNDS ?= 3
bench: setup ## every guarantee vs Spark's Delta sink, files and Kafka, 1M and 5M records; MERGE at 1M vs 10M rows; dedup vs stateless; Kafka sink exactly-once vs Spark's (bench/results/)
	$(PY) bench/guarantee_cost.py --records 1000000 5000000 --rounds $(BENCH_ROUNDS)
	$(PY) bench/merge_scaling.py --targets 1000000 10000000 --rounds $(BENCH_ROUNDS)
	$(PY) bench/dedup_throughput.py --records 200000 --files 10 --rounds $(BENCH_ROUNDS)
	$(PY) bench/kafka_sink_throughput.py --records 200000 --batches 10 --parts 2 4 --rounds $(BENCH_ROUNDS)

bench-kafka-sink: setup ## Kafka -> Kafka: Spark's Kafka sink vs the exactly-once one (2 and 4 parts), same run (bench/results/)
	$(PY) bench/kafka_sink_throughput.py --records 200000 --batches 10 --parts 2 4 --rounds $(BENCH_ROUNDS)

bench-storage: setup ## one micro-batch's time on local disk, HDFS and S3 (bench/results/)
	$(PY) bench/storage_batch_time.py --records 60000 --batches 8 --rounds 2

bench-postgres: setup ## a 1M-row backfill into PostgreSQL: staged sink vs naive driver insert (bench/results/)
	$(PY) bench/postgres_backfill.py --rows 1000000 --rounds 2

bench-quality: setup ## rows/s without and with parsing and rules, same run (bench/results/)
	$(PY) bench/quality_throughput.py --records 500000 --files 10 --rounds 2

clean-state: ## remove sample data, tables, checkpoints, local service data
	rm -rf data state spark-warehouse .services

clean: clean-state ## also remove the venv and jars
	rm -rf $(VENV) .jars *.egg-info src/*.egg-info
