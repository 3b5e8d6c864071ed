# Two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit soak bench clean gotools browser valgrind

# Go and golang.org/x/mod from Debian's packages, offline: the independent auditor of published
# tiles (tests/tlogcheck) is built against them by the tests.
gotools:
	@test -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog && command -v go >/dev/null || \
		(apt-get install -y -q golang-go golang-golang-x-mod-dev || \
		 (apt-get update -q && apt-get install -y -q golang-go golang-golang-x-mod-dev))

# Debian's chromium for the browser tests, driven through Playwright's executable path (Playwright
# never downloads a browser here).
browser:
	@command -v chromium >/dev/null || (apt-get install -y -q chromium || \
		(apt-get update -q && apt-get install -y -q chromium))

# Debian's valgrind: bench/instructions.py counts instructions per governed action with callgrind
# (its quick run is tested).
valgrind:
	@command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || \
		(apt-get install -y -q valgrind || (apt-get update -q && apt-get install -y -q valgrind))

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,logistics,report,integrations]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/answerable demo storm --seed 7 --mode all --out out/storm
	printf '%s\n' ungoverned rules governed monitored | xargs -P 2 -I{} \
		$(BIN)/answerable report out/storm/{}.db --out out/storm/{}.html --force
	$(BIN)/answerable report-compare out/storm/ungoverned.db out/storm/rules.db out/storm/governed.db \
		out/storm/monitored.db --out out/storm/compare.html --force
	@echo "outputs in out/storm: ungoverned.db rules.db governed.db monitored.db (ledgers), result.json,"
	@echo "  a report per ledger (ungoverned.html ...) and compare.html"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, one per core (pytest-xdist). Tests share the machine's PostgreSQL and nats-server:
# each names its schemas and streams for itself and cleans up only those.
unit: $(STAMP) gotools browser valgrind
	$(BIN)/pytest -m 'not full' -n 2

test: lint typecheck unit

# The full crash matrix (192 cells: kill -9 and SIGSTOP x 4 flows x 6 points x 4 partner modes) and
# every multi-process scenario under 5 seeds; `make test` runs a small seeded sample of the same.
# ANSWERABLE_SEED=N replays one seed.
soak: $(STAMP)
	ANSWERABLE_SOAK=1 $(BIN)/pytest -m 'crash or soak or full' -p no:randomly -n 2

# Every benchmark, each recorded in bench/README.md with the command that printed it (bench/record.py).
RECORD := $(BIN)/python bench/record.py
bench: $(STAMP) valgrind
	$(BIN)/python -m pip install --quiet -e '.[dev,logistics,report,bench,integrations]'
	$(RECORD) governed_call -- $(BIN)/python bench/governed_call.py
	$(RECORD) instructions -- $(BIN)/python bench/instructions.py
	$(RECORD) cli_latency -- $(BIN)/python bench/cli_latency.py
	$(RECORD) ledger -- $(BIN)/python bench/ledger.py
	$(RECORD) policy -- $(BIN)/python bench/policy.py
	$(RECORD) provenance -- $(BIN)/python bench/provenance.py
	$(RECORD) monitors -- $(BIN)/python bench/monitors.py
	$(RECORD) coordination -- $(BIN)/python bench/coordination.py
	$(RECORD) service -- $(BIN)/python bench/service.py
	$(RECORD) postgres -- $(BIN)/python bench/postgres.py
	$(RECORD) bus -- $(BIN)/python bench/bus.py
	$(RECORD) distributed -- $(BIN)/python bench/distributed.py
	$(RECORD) mcp_proxy -- $(BIN)/python bench/mcp_proxy.py
	$(RECORD) storm -- $(BIN)/python bench/storm.py
	$(RECORD) routing -- $(BIN)/python bench/routing.py tests/data/vrp/solomon/C101.txt tests/data/vrp/solomon/R101.txt tests/data/vrp/solomon/RC101.txt tests/data/vrp/cvrp/A-n32-k5.vrp tests/data/vrp/cvrp/X-n101-k25.vrp --seconds 10

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache
