# Two entry points (README): `make demo` and `make test`.  Both create the
# virtualenv and install what they need, Debian packages included.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test bench mutation examples clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Boot the bundled iret guest (patch templates, lguest_iret, timer irqs),
# write its Host trace, draw the interrupt timeline, then show the race the
# noirq window prevents: an interrupt at each instruction of lguest_iret.
demo: $(STAMP)
	tools/install-deps.sh demo
	$(BIN)/lgdbg run --trace demo-trace.jsonl
	$(BIN)/lgdbg timeline demo-trace.jsonl -o demo-timeline.html --image lgdbg/images/iret.elf
	$(BIN)/lgdbg explore iret --at main_loop --window lguest_iret-lguest_noirq_end --irq 0 --no-noirq
	@echo "timeline written to demo-timeline.html; next: $(BIN)/lgdbg gdb  or  $(BIN)/lgdbg repl"

test: $(STAMP)
	tools/install-deps.sh test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Mutation testing of the Host's decision routines (not part of `make test`):
# mutmut over the files [tool.mutmut] lists in pyproject.toml, against the
# fast Host-rule tests; prints the score.  Survivors: $(BIN)/mutmut results.
mutation: $(VENV)/.mutation
	tools/install-deps.sh test
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_score.py --timeouts | xargs -r $(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_score.py

$(VENV)/.mutation: $(STAMP)
	$(BIN)/pip install -q -e '.[test,mutation]'
	touch $@

# Rebuild the example guests and copy them into the package.
examples:
	$(MAKE) -C examples install

clean:
	rm -rf $(VENV) mutants demo-trace.jsonl demo-timeline.html
