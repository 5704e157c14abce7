# attnflow quick start:
#   make demo   install missing Debian packages, build the CLI and Python package, run the main job
#   make test   install missing Debian packages, build, run every test (C++ and Python)
#   make        build everything into build/ (library, CLI, tests, benches, Python module)
#   make bench  install the peers (PyTorch, POT) and run the side-by-side benchmarks
#   make fuzz   build the libFuzzer targets (clang-15) and run each for FUZZ_SECONDS (60)
#   make install [PREFIX=/usr/local]
BUILD ?= build
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz

.PHONY: all deps configure build demo test bench install sanitize fuzz fuzz-build clean

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

# test: the main build, CTest, then 5 s of fuzzing per parser; the fuzz build runs beside the
# main build and the tests at the lowest priority (scripts/test.sh).
test: deps
	@scripts/install-deps.sh fuzz
	@$(MAKE) --no-print-directory configure
	scripts/test.sh $(BUILD) $(JOBS) $(FUZZ_BUILD) 5

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

# Fuzzing (fuzz/): each target runs FUZZ_SECONDS from the committed corpus; `make test` runs
# each for 5 s, and its CTest entries fuzz_replay_* replay the corpus with the normal build.
fuzz:
	@scripts/install-deps.sh fuzz
	@$(MAKE) --no-print-directory fuzz-build
	fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The fuzz targets alone (packages already installed): `make fuzz` and scripts/test.sh.
fuzz-build:
	cmake --preset fuzz
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_npy fuzz_config fuzz_model fuzz_checkpoint

clean:
	rm -rf $(BUILD) build-sanitize build-debug $(FUZZ_BUILD)
