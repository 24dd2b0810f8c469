# libvqjepa - see README.md. `make` builds the libraries and bin/vqjepa;
# `make check` runs every test; `make bench` the benchmarks.
VERSION_MAJOR := $(shell sed -n 's/^\#define VQJ_VERSION_MAJOR \([0-9]*\)/\1/p' include/vqjepa.h)
VERSION_MINOR := $(shell sed -n 's/^\#define VQJ_VERSION_MINOR \([0-9]*\)/\1/p' include/vqjepa.h)
VERSION_PATCH := $(shell sed -n 's/^\#define VQJ_VERSION_PATCH \([0-9]*\)/\1/p' include/vqjepa.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
ARC_DATA ?= ../shared/data/arc-agi-1/data/training

CC ?= cc
CXX ?= c++
PKG_CONFIG ?= pkg-config
OPT ?= -O2
DEPS := openblas jansson yaml-0.1 zlib
DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS))
DEPS_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS)) -lm -lpthread
WARN := -Wall -Wextra -Werror
CPPFLAGS += -Iinclude -Isrc -D_POSIX_C_SOURCE=200809L
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 $(WARN) -fPIC -fvisibility=hidden $(DEPS_CFLAGS)

CUDA ?= 0
ifeq ($(CUDA),1)
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
# sm_90 code for H100/H200, plus compute_90 PTX that newer GPUs compile at load.
NVCC_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -lineinfo
CPPFLAGS += -DVQJ_WITH_CUDA
CUDA_SRC := $(wildcard cuda/*.cu)
CUDA_OBJ := $(CUDA_SRC:%.cu=build/%.o)
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
DEPS_LIBS += $(CUDA_LIBS)
endif

LIB_SRC := $(wildcard src/*/*.c)
LIB_OBJ := $(LIB_SRC:%.c=build/%.o) $(CUDA_OBJ)
SONAME := libvqjepa.so.$(VERSION_MAJOR)
SHARED := lib/libvqjepa.so.$(VERSION)
STATIC := lib/libvqjepa.a
PCFILE := lib/pkgconfig/vqjepa.pc

TOOL_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=bin/%)
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=bin/example_%)

.PHONY: all check test bench install uninstall examples clean docs
all: $(SHARED) lib/libvqjepa.so lib/$(SONAME) $(STATIC) $(PCFILE) bin/vqjepa

# Objects of a CUDA=1 and a CUDA=0 build differ (VQJ_WITH_CUDA): switching
# rewrites this stamp, which every object depends on, so nothing stale mixes.
BUILD_FLAVOR := cuda$(CUDA)
$(shell mkdir -p build; [ "$$(cat build/.flavor 2>/dev/null)" = "$(BUILD_FLAVOR)" ] || \
  echo "$(BUILD_FLAVOR)" > build/.flavor)
build/.flavor:
	@mkdir -p build
	echo "$(BUILD_FLAVOR)" > $@

build/%.o: %.c $(wildcard include/*.h src/*/*.h) build/.flavor
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The built-in ARC-AGI-1 tasks are assembled into the library (.incbin in
# src/data/builtin.c, paths relative to this folder); tools/make_arc_data.py
# regenerates them from the task folders.
ARC_BUILTIN := data/arc-agi-1/training.jsonl.gz data/arc-agi-1/evaluation.jsonl.gz
build/src/data/builtin.o: $(ARC_BUILTIN)

# --fmad=false: elementwise kernels round like their C twins (docs/perf-cuda.md).
build/cuda/%.o: cuda/%.cu $(wildcard include/*.h src/*/*.h cuda/*.h) build/.flavor
	@mkdir -p $(dir $@)
	@echo "NVCC $<"
	@$(NVCC) $(NVCCFLAGS) -std=c++17 --fmad=false -Werror all-warnings \
	  -Xcompiler -Wall,-Wextra,-Werror,-fPIC,-fvisibility=hidden -Iinclude -Isrc -DVQJ_WITH_CUDA \
	  $(NVCC_ARCH) -c $< -o $@

$(SHARED): $(LIB_OBJ) src/vqjepa.map
	@mkdir -p lib
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/vqjepa.map -Wl,--no-undefined \
	  -o $@ $(LIB_OBJ) $(DEPS_LIBS)

lib/$(SONAME): $(SHARED)
	ln -sf $(notdir $(SHARED)) $@
lib/libvqjepa.so: lib/$(SONAME)
	ln -sf $(SONAME) $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p lib
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

# The .pc file for an installed tree; tests use it with a prefix of their own.
define PC_TEXT
prefix=$(PREFIX)
exec_prefix=$${prefix}
libdir=$(LIBDIR)
includedir=$(INCLUDEDIR)

Name: vqjepa
Description: Object-centric vector-quantized JEPA for ARC grids
Version: $(VERSION)
Requires.private: $(DEPS)
Libs: -L$${libdir} -lvqjepa
Libs.private: -lm -lpthread $(CUDA_LIBS)
Cflags: -I$${includedir}
endef
export PC_TEXT
$(PCFILE): Makefile include/vqjepa.h
	@mkdir -p lib/pkgconfig
	printf '%s\n' "$$PC_TEXT" > $@

# The CLI is a client of the shared library like any other (exported vqj_
# functions only; `ldd bin/vqjepa` lists libvqjepa.so.0), found next to it
# in the tree and in an installed prefix (bin/../lib). The tests link the
# static library: they may use internal (vqji_) functions.
bin/vqjepa: $(TOOL_SRC) lib/libvqjepa.so
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(TOOL_SRC) -Llib -lvqjepa -Wl,-rpath,'$$ORIGIN/../lib' \
	  $(DEPS_LIBS)

bin/test_%: tests/test_%.c tests/testutil.h tests/testmodel.h $(STATIC)
	@mkdir -p bin
	@echo "LD $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STATIC) $(DEPS_LIBS) $(shell $(PKG_CONFIG) --libs cmocka)

bin/example_%: examples/%.c examples/common.h $(SHARED) lib/libvqjepa.so
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< -Llib -lvqjepa -Wl,-rpath,'$$ORIGIN/../lib'

examples: $(EXAMPLE_BIN)

# The C++17 wrapper's test, built the strict way users' code would be.
bin/cpp_test: tests/cpp_test.cpp include/vqjepa.hpp include/vqjepa.h $(SHARED) lib/libvqjepa.so
	@mkdir -p bin
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -o $@ $< -Llib -lvqjepa \
	  -Wl,-rpath,'$$ORIGIN/../lib' -pthread

# Every test program runs even when an earlier one fails. A program that
# exits 77 was skipped (its toolchain or data is missing: it says why); the
# summary counts passed, failed and skipped programs, and the cmocka cases
# that passing programs skipped (" N SKIPPED TEST(S)").
check: all $(TEST_BIN) examples bin/cpp_test bin/tsan_test_inference
	@passed=0; failed=0; skipped=0; cases=0; failures=""; skips=""; \
	log=$$(mktemp); trap 'rm -f "$$log" "$$log.rc"' EXIT; \
	for t in $(TEST_BIN) tests/examples_test.sh tests/install_test.sh tests/cli_test.sh tests/cli_config_test.sh \
	    tests/cli_train_test.sh bin/cpp_test tests/header_docs_test.sh tests/tsan_test.sh \
	    tests/python_test.sh tests/rust_test.sh; do \
	  echo "== $$t"; \
	  case $$t in *.sh) cmd="sh $$t";; *) cmd="./$$t";; esac; \
	  { CC="$(CC)" CXX="$(CXX)" VQJ_ARC_DATA=$(ARC_DATA) \
	    VQJ_REFERENCE_CONFIGS=../shared/reference-configs $$cmd 2>&1; echo $$? > "$$log.rc"; } \
	    | tee "$$log"; rc=$$(cat "$$log.rc"); \
	  if [ $$rc -eq 0 ]; then passed=$$((passed+1)); \
	    n=$$(sed -n 's/^ *\([0-9][0-9]*\) SKIPPED TEST(S)$$/\1/p' "$$log" | tail -1); \
	    if [ -n "$$n" ]; then cases=$$((cases+n)); skips="$$skips $$t($$n cases)"; fi; \
	  elif [ $$rc -eq 77 ]; then skipped=$$((skipped+1)); skips="$$skips $$t"; \
	  else failed=$$((failed+1)); failures="$$failures $$t"; fi; \
	done; \
	echo "check: $$passed passed, $$failed failed, $$skipped skipped ($$cases cases skipped inside passing programs)"; \
	[ -z "$$skips" ] || echo "skipped:$$skips"; \
	[ $$failed -eq 0 ] || { echo "failed:$$failures"; exit 1; }
test: check

# The CUDA kernels' logic on the CPU, with no nvcc or GPU: tests/test_cuda.c
# against the backend compiled for the emulation in cuda/emu/ (not part of
# `check`; docs/perf-cuda.md).
check-cuda-emu:
	cuda/emu/run_tests.sh
.PHONY: check-cuda-emu

# ThreadSanitizer over the thread-safe inference calls (vqj_model_*): the
# library and tests/test_inference.c built with -fsanitize=thread, CPU only.
# Part of `make check` (about 10 s to build, 3 s to run); tests/tsan_test.sh
# says why no suppressions file is needed.
TSAN_CFLAGS := -std=c11 $(WARN) -fsanitize=thread -O1 -g $(DEPS_CFLAGS)
bin/tsan_test_inference: tests/test_inference.c tests/testutil.h $(LIB_SRC) $(ARC_BUILTIN) \
    $(wildcard include/*.h src/*/*.h)
	@mkdir -p bin
	@echo "LD $@ (ThreadSanitizer)"
	@$(CC) $(filter-out -DVQJ_WITH_CUDA,$(CPPFLAGS)) -DVQJ_TSAN $(TSAN_CFLAGS) -o $@ $< \
	  $(LIB_SRC) $(DEPS_LIBS) $(shell $(PKG_CONFIG) --libs cmocka)
.PHONY: tsan
tsan: bin/tsan_test_inference
	sh tests/tsan_test.sh

# `make bench`: the tokenizer and encoder rows, then training steps (core and
# full variants) of the C library and of the PyTorch reference when
# $(TORCH_PYTHON) has torch, each run in its own process so that its max RSS
# is its own, then a table of the ratios (docs/benchmarks.md).
BENCH_BATCH ?= 256
BENCH_STEPS ?= 5
BENCH_WARMUP ?= 2
BENCH_THREADS ?= 0
TORCH_PYTHON ?= /usr/bin/python3
BENCH_DATA = $(if $(wildcard $(ARC_DATA)),--data $(ARC_DATA))
BENCH_TRAIN = --batch $(BENCH_BATCH) --steps $(BENCH_STEPS) --warmup $(BENCH_WARMUP) \
  --threads $(BENCH_THREADS) --json
bench: all
	./bin/vqjepa bench $(BENCH_DATA) --only tokenizer
	./bin/vqjepa bench $(BENCH_DATA) --only encoder
	@mkdir -p build/bench && rm -f build/bench/*.jsonl
	@for v in core full; do \
	  ./bin/vqjepa bench $(BENCH_DATA) --only train_step --variant $$v $(BENCH_TRAIN) \
	    > build/bench/c-$$v.jsonl || exit 1; cat build/bench/c-$$v.jsonl; \
	done
	@if $(TORCH_PYTHON) -c 'import torch' 2>/dev/null; then \
	  for v in core full; do \
	    $(TORCH_PYTHON) tools/reference/bench_ref.py $(BENCH_DATA) --variant $$v $(BENCH_TRAIN) \
	      > build/bench/pytorch-$$v.jsonl || exit 1; cat build/bench/pytorch-$$v.jsonl; \
	  done; \
	else echo "bench: $(TORCH_PYTHON) cannot import torch; skipping the PyTorch reference"; fi
	@python3 tools/bench_table.py build/bench/*.jsonl
	@echo "bench: the core step again with tokenizer.max_objects 64 (the default above is 16):"
	./bin/vqjepa bench $(BENCH_DATA) --only train_step --variant core --max-objects 64 $(BENCH_TRAIN)

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 644 include/vqjepa.h include/vqjepa.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvqjepa.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	printf '%s\n' "$$PC_TEXT" > $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc
	install -m 755 bin/vqjepa $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/vqjepa.h $(DESTDIR)$(INCLUDEDIR)/vqjepa.hpp $(DESTDIR)$(LIBDIR)/libvqjepa.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc $(DESTDIR)$(BINDIR)/vqjepa

# The API reference (HTML in docs/api/) from the header comments; needs
# Debian's doxygen. Not part of `make check` (tests/header_docs_test.sh is).
docs: Doxyfile include/vqjepa.h include/vqjepa.hpp docs/bindings.md
	@command -v doxygen >/dev/null 2>&1 || { echo "make docs needs doxygen (apt-get install doxygen)" >&2; exit 1; }
	@mkdir -p docs/api
	VQJ_VERSION=$(VERSION) doxygen Doxyfile
	@echo "API reference: docs/api/index.html (warnings: docs/api/warnings.log)"

clean:
	rm -rf build lib bin
