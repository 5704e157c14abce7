# attnflow quick start:
#   make demo   install missing Debian packages, build the CLI and Python package, run the main job
#   make test   install missing Debian packages, build, run every test (C++ and Python)
#   make        build everything into build/ (library, CLI, tests, benches, Python module)
#   make bench  install the peers (PyTorch, POT) and run the side-by-side benchmarks
#   make install [PREFIX=/usr/local]
BUILD ?= build
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all deps configure build demo test bench install sanitize clean

all: build

deps:
	@scripts/install-deps.sh build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: deps configure
	cmake --build $(BUILD) -j $(JOBS) --target attnflow attnflow_python attnflow_viewer
	$(BUILD)/attnflow demo --out $(BUILD)/demo

test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: deps
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	bench/run_all.sh $(BUILD)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

sanitize: deps
	cmake --preset sanitize
	cmake --build build-sanitize -j $(JOBS)
	cd build-sanitize && ctest --output-on-failure -j $(JOBS) -E pytest

clean:
	rm -rf $(BUILD) build-sanitize build-debug
