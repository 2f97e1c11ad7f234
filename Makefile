# The two set-up commands of the README:
#   make demo   installs everything into .venv and runs the main job on the built-in default
#   make test   installs everything into .venv and runs the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.irstd-installed

.PHONY: install demo test bench clean

$(STAMP): requirements.txt requirements-build.txt setup.py scripts/setup.sh scripts/build_interfaces.sh \
		scripts/link_share.py $(wildcard launch/*.py) $(wildcard config/*) \
		interfaces/vision_msgs/package.xml interfaces/vision_msgs/CMakeLists.txt $(wildcard interfaces/vision_msgs/msg/*.msg)
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/irstd-demo

test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --durations=15 test

bench: install
	$(PY) bench/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info
