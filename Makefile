# The two commands the README promises: `make demo` (set up + run the main job) and
# `make test` (set up + run the tests). Both create .venv once and reuse it afterwards:
# the stamp file is keyed on pyproject.toml, so changing dependencies reinstalls.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
SHARED ?= ../shared/data

.PHONY: setup test test-all demo clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[train,serve,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

test: setup
	$(VENV)/bin/python -m pytest -q

test-all: setup
	MMREC_RUN_SLOW=1 $(VENV)/bin/python -m pytest -q

demo: setup
	$(VENV)/bin/mmrec demo --source $(SHARED)

clean:
	rm -rf $(VENV) artifacts
