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

# `make MPI=1`: the MPI communicator backend (src/comm/), built with Open
# MPI's compiler wrapper; with CUDA=1 also NCCL for the device buffers
# (docs/distributed.md).
MPI ?= 0
MPICC ?= mpicc
ifeq ($(MPI),1)
CC := $(MPICC)
CPPFLAGS += -DVQJ_WITH_MPI
ifeq ($(CUDA),1)
CPPFLAGS += -DVQJ_WITH_NCCL -I$(CUDA_HOME)/include
DEPS_LIBS += -lnccl
endif
endif

HAVE_MPICC := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)
MPI_CHECK_BIN := $(if $(HAVE_MPICC),bin/mpi/vqjepa bin/mpi/test_mpi)

LIB_SRC := $(wildcard src/*/*.c)
LIB_OBJ := $(LIB_SRC:%.c=build/%.o) $(CUDA_OBJ)
SONAME := libvqjepa.so.$(VERSION_MAJOR)
SHARED := lib/libvqjepa.so.$(VERSION)
STATIC := lib/libvqjepa.a
PCFILE := lib/pkgconfig/vqjepa.pc

TOOL_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=bin/%)
# The libFuzzer harnesses (tests/fuzz/; rules below), built by `check`
# when clang is installed.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_NAMES := arc jsonl config checkpoint tokenizer
FUZZ_BIN := $(FUZZ_NAMES:%=bin/fuzz_%)
FUZZ_OK := $(shell command -v $(FUZZ_CC) >/dev/null 2>&1 && echo yes)
EXAMPLE_SRC := $(wildcard examples/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=bin/example_%)

.PHONY: all check test bench install uninstall examples clean docs
all: $(SHARED) lib/libvqjepa.so lib/$(SONAME) $(STATIC) $(PCFILE) bin/vqjepa

# Objects of a CUDA=1 and a CUDA=0 build differ (VQJ_WITH_CUDA): switching
# rewrites this stamp, which every object depends on, so nothing stale mixes.
BUILD_FLAVOR := cuda$(CUDA)-mpi$(MPI)
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

# The frozen ABI test: tests/abi/abi_test.c compiled against the header as
# released in 0.1 (tests/abi/0.1/vqjepa.h, never the current include/), its
# structs at their 0.1 sizes, linked against the current shared library.
bin/abi_test: tests/abi/abi_test.c tests/abi/0.1/vqjepa.h $(SHARED) lib/libvqjepa.so
	@mkdir -p bin
	$(CC) -std=c11 $(WARN) -D_POSIX_C_SOURCE=200809L -Itests/abi/0.1 -o $@ $< -Llib -lvqjepa \
	  -Wl,-rpath,'$$ORIGIN/../lib' -lm

# The C++17 wrapper's test, built the strict way users' code would be.
bin/cpp_test: tests/cpp_test.cpp include/vqjepa.hpp include/vqjepa.h include/vqjepa_stages.h \
    $(SHARED) lib/libvqjepa.so
	@mkdir -p bin
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -o $@ $< -Llib -lvqjepa \
	  -Wl,-rpath,'$$ORIGIN/../lib' -pthread

# I/O faults for tests/crash_test.sh: an LD_PRELOAD library that fails the
# creation, fsync or rename of the temporary file of an atomic write.
bin/fault_inject.so: tests/fault_inject.c
	@mkdir -p bin
	$(CC) -std=c11 $(WARN) -O1 -shared -fPIC -o $@ $< -ldl

# Every test program runs even when an earlier one fails. A program that
# exits 77 was skipped (its toolchain or data is missing: it says why); the
# summary counts passed, failed and skipped programs, and the cmocka cases
# that passing programs skipped (" N SKIPPED TEST(S)").
check: all $(TEST_BIN) examples bin/cpp_test bin/abi_test bin/tsan_test_inference bin/alloc_fail_test bin/fault_inject.so \
    $(if $(FUZZ_OK),$(FUZZ_BIN)) $(MPI_CHECK_BIN)
	@passed=0; failed=0; skipped=0; cases=0; failures=""; skips=""; \
	log=$$(mktemp); trap 'rm -f "$$log" "$$log.rc"' EXIT; \
	for t in $(TEST_BIN) bin/abi_test bin/alloc_fail_test tests/examples_test.sh tests/install_test.sh tests/cli_test.sh tests/cli_config_test.sh \
	    tests/cli_train_test.sh tests/crash_test.sh tests/fuzz_test.sh bin/cpp_test tests/header_docs_test.sh tests/binding_decls_test.sh tests/layering_test.sh tests/tsan_test.sh \
	    tests/python_test.sh tests/rust_test.sh tests/mpi/check_mpi.sh; do \
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

# `make check-mpi`: the MPI flavor of the library, the CLI and the
# data-parallel test, built into build/mpi and bin/mpi (beside the default
# build, so `make check` can run it without rebuilding anything), run on
# loopback with `mpirun --oversubscribe -np 2` (tests/mpi/check_mpi.sh;
# docs/distributed.md). `make check` runs it when mpicc is installed.
MPI_CPPFLAGS := $(filter-out -DVQJ_WITH_CUDA -DVQJ_WITH_MPI -DVQJ_WITH_NCCL,$(CPPFLAGS)) -DVQJ_WITH_MPI
MPI_DEPS_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS)) -lm -lpthread
MPI_OBJ := $(LIB_SRC:%.c=build/mpi/%.o)
build/mpi/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "MPICC $<"
	@$(MPICC) $(MPI_CPPFLAGS) $(CFLAGS) -c $< -o $@
build/mpi/src/data/builtin.o: $(ARC_BUILTIN)
build/mpi/libvqjepa.a: $(MPI_OBJ)
	@rm -f $@
	@ar rcs $@ $(MPI_OBJ)
bin/mpi/vqjepa: $(TOOL_SRC) build/mpi/libvqjepa.a
	@mkdir -p bin/mpi
	@echo "LD $@"
	@$(MPICC) $(MPI_CPPFLAGS) $(CFLAGS) -o $@ $(TOOL_SRC) build/mpi/libvqjepa.a $(MPI_DEPS_LIBS)
bin/mpi/test_mpi: tests/mpi/test_mpi.c tests/testutil.h tests/testmodel.h build/mpi/libvqjepa.a
	@mkdir -p bin/mpi
	@echo "LD $@"
	@$(MPICC) $(MPI_CPPFLAGS) $(CFLAGS) -o $@ $< build/mpi/libvqjepa.a $(MPI_DEPS_LIBS) \
	  $(shell $(PKG_CONFIG) --libs cmocka)
check-mpi: $(MPI_CHECK_BIN)
	sh tests/mpi/check_mpi.sh
.PHONY: check-mpi

# The CUDA kernels' logic on the CPU, with no nvcc or GPU: tests/test_cuda.c
# against the backend compiled for the emulation in cuda/emu/ (not part of
# `check`; docs/perf-cuda.md).
check-cuda-emu:
	cuda/emu/run_tests.sh
.PHONY: check-cuda-emu

# AddressSanitizer + UBSan (docs/failures.md): the library's objects in
# build/asan/, lib/asan/libvqjepa.a, the C tests and the CLI linked to it.
# `make asan` runs the C tests and the CLI tests under it; `make check` runs
# tests/alloc_fail_test.c, which needs LeakSanitizer to find the leaks of
# failure paths.
ASAN_CFLAGS := -std=c11 $(WARN) -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=undefined $(DEPS_CFLAGS)
ASAN_CPPFLAGS := $(filter-out -DVQJ_WITH_CUDA,$(CPPFLAGS))
ASAN_LIBS := $(filter-out $(CUDA_LIBS),$(DEPS_LIBS))
ASAN_OBJ := $(LIB_SRC:%.c=build/asan/%.o)
.SECONDARY: $(ASAN_OBJ)
build/asan/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "CC $< (asan)"
	@$(CC) $(ASAN_CPPFLAGS) $(ASAN_CFLAGS) -c $< -o $@
build/asan/src/data/builtin.o: $(ARC_BUILTIN)
lib/asan/libvqjepa.a: $(ASAN_OBJ)
	@mkdir -p lib/asan
	@rm -f $@
	@ar rcs $@ $(ASAN_OBJ)
bin/alloc_fail_test: tests/alloc_fail_test.c tests/testutil.h lib/asan/libvqjepa.a
	@mkdir -p bin
	@echo "LD $@ (AddressSanitizer)"
	@$(CC) $(ASAN_CPPFLAGS) $(ASAN_CFLAGS) -o $@ $< lib/asan/libvqjepa.a $(ASAN_LIBS) \
	  $(shell $(PKG_CONFIG) --libs cmocka)
bin/asan/test_%: tests/test_%.c tests/testutil.h tests/testmodel.h lib/asan/libvqjepa.a
	@mkdir -p bin/asan
	@echo "LD $@ (AddressSanitizer)"
	@$(CC) $(ASAN_CPPFLAGS) $(ASAN_CFLAGS) -o $@ $< lib/asan/libvqjepa.a $(ASAN_LIBS) \
	  $(shell $(PKG_CONFIG) --libs cmocka)
bin/asan/vqjepa: $(TOOL_SRC) lib/asan/libvqjepa.a
	@mkdir -p bin/asan
	@echo "LD $@ (AddressSanitizer)"
	@$(CC) $(ASAN_CPPFLAGS) $(ASAN_CFLAGS) -o $@ $(TOOL_SRC) lib/asan/libvqjepa.a $(ASAN_LIBS)
ASAN_TEST_BIN := $(TEST_SRC:tests/%.c=bin/asan/%)
.PHONY: asan
asan: $(ASAN_TEST_BIN) bin/asan/vqjepa bin/alloc_fail_test
	@passed=0; failed=0; failures=""; \
	for t in $(ASAN_TEST_BIN) bin/alloc_fail_test tests/cli_test.sh tests/cli_train_test.sh; do \
	  echo "== $$t (asan)"; \
	  case $$t in *.sh) cmd="sh $$t";; *) cmd="./$$t";; esac; \
	  if VQJEPA=bin/asan/vqjepa VQJ_ARC_DATA=$(ARC_DATA) VQJ_REFERENCE_CONFIGS=../shared/reference-configs \
	    ASAN_OPTIONS=detect_leaks=1 $$cmd; then passed=$$((passed+1)); \
	  else failed=$$((failed+1)); failures="$$failures $$t"; fi; \
	done; \
	echo "asan: $$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ] || { echo "failed:$$failures"; exit 1; }

# libFuzzer harnesses (tests/fuzz/, docs/failures.md): the library built
# with clang's coverage, AddressSanitizer and UBSan. `make fuzz
# FUZZ_SECONDS=N` fuzzes each harness N seconds (new inputs go to
# build/fuzz/corpus/, crashes to build/fuzz/); `make check` runs each over
# its committed corpus once (tests/fuzz_test.sh; SKIPPED without clang).
FUZZ_CFLAGS := -std=c11 $(WARN) -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  $(DEPS_CFLAGS)
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/%.o)
.SECONDARY: $(FUZZ_OBJ)
build/fuzz/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "CC $< (fuzz)"
	@$(FUZZ_CC) $(filter-out -DVQJ_WITH_CUDA,$(CPPFLAGS)) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	  -c $< -o $@
build/fuzz/src/data/builtin.o: $(ARC_BUILTIN)
bin/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJ)
	@mkdir -p bin
	@echo "LD $@ (libFuzzer)"
	@$(FUZZ_CC) $(filter-out -DVQJ_WITH_CUDA,$(CPPFLAGS)) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_OBJ) $(filter-out $(CUDA_LIBS),$(DEPS_LIBS))
.PHONY: fuzz
fuzz: $(FUZZ_BIN)
	@for n in $(FUZZ_NAMES); do \
	  mkdir -p build/fuzz/corpus/$$n; \
	  echo "== fuzz_$$n: $(FUZZ_SECONDS) s"; \
	  ./bin/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -artifact_prefix=build/fuzz/fuzz_$$n- build/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	    2>&1 | tail -3 || exit 1; \
	done

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

# `make bench`: the tokenizer and encoder rows, then training steps (core at
# batch BENCH_BATCH_CORE, full at BENCH_BATCH_FULL, with the time split by
# phase) of the C library and of the PyTorch reference when $(TORCH_PYTHON)
# has torch, each run in its own process so that its max RSS is its own, then
# a table of the ratios (docs/benchmarks.md).
BENCH_BATCH ?= 256
BENCH_BATCH_CORE ?= $(BENCH_BATCH)
BENCH_BATCH_FULL ?= 64
BENCH_STEPS ?= 5
BENCH_WARMUP ?= 2
BENCH_THREADS ?= 0
TORCH_PYTHON ?= /usr/bin/python3
BENCH_DATA = $(if $(wildcard $(ARC_DATA)),--data $(ARC_DATA))
BENCH_TRAIN = --steps $(BENCH_STEPS) --warmup $(BENCH_WARMUP) --threads $(BENCH_THREADS) --json
bench: all
	./bin/vqjepa bench $(BENCH_DATA) --only tokenizer
	./bin/vqjepa bench $(BENCH_DATA) --only encoder
	@mkdir -p build/bench && rm -f build/bench/*.jsonl
	@for v in core full; do \
	  if [ $$v = core ]; then b=$(BENCH_BATCH_CORE); else b=$(BENCH_BATCH_FULL); fi; \
	  ./bin/vqjepa bench $(BENCH_DATA) --only train_step --variant $$v --batch $$b --phases \
	    $(BENCH_TRAIN) > build/bench/c-$$v.jsonl || exit 1; cat build/bench/c-$$v.jsonl; \
	done
	@if $(TORCH_PYTHON) -c 'import torch' 2>/dev/null; then \
	  for v in core full; do \
	    if [ $$v = core ]; then b=$(BENCH_BATCH_CORE); else b=$(BENCH_BATCH_FULL); fi; \
	    $(TORCH_PYTHON) tools/reference/bench_ref.py $(BENCH_DATA) --variant $$v --batch $$b \
	      $(BENCH_TRAIN) > build/bench/pytorch-$$v.jsonl || exit 1; cat build/bench/pytorch-$$v.jsonl; \
	  done; \
	else echo "bench: $(TORCH_PYTHON) cannot import torch; skipping the PyTorch reference"; fi
	@python3 tools/bench_table.py build/bench/*.jsonl
	@echo "bench: the core step again with tokenizer.max_objects 64 (the default above is 16):"
	./bin/vqjepa bench $(BENCH_DATA) --only train_step --variant core --max-objects 64 \
	  --batch $(BENCH_BATCH_CORE) $(BENCH_TRAIN)
	@if [ -n "$(HAVE_MPICC)" ] && command -v mpirun >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory bench-mpi; \
	else echo "bench: no Open MPI (mpicc, mpirun); skipping the data-parallel rows"; fi

# Data-parallel rows (docs/distributed.md): the core step of the reference
# model at 1 and 2 ranks on loopback, one thread each, the same global batch;
# scaling efficiency = samples/s at 2 ranks / (2 x samples/s at 1 rank).
BENCH_MPI_BATCH ?= 64
bench-mpi: bin/mpi/vqjepa
	@mkdir -p build/bench-mpi && rm -f build/bench-mpi/*.jsonl
	@for np in 1 2; do \
	  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
	  mpirun --oversubscribe --bind-to none -np $$np bin/mpi/vqjepa bench $(BENCH_DATA) \
	    --only train_step --variant core --threads 1 --batch $(BENCH_MPI_BATCH) \
	    --steps $(BENCH_STEPS) --warmup $(BENCH_WARMUP) --json \
	    > build/bench-mpi/ranks-$$np.jsonl || exit 1; \
	done
	@python3 -c 'import json; \
	r = [json.loads(open("build/bench-mpi/ranks-%d.jsonl" % n).readline()) for n in (1, 2)]; \
	[print("bench-mpi: %d rank(s), 1 thread each, global batch %d: %.1f ms/step, %.2f samples/s" \
	  % (n, x["batch"], x["ms_per_step"], x["samples_per_s"])) for n, x in zip((1, 2), r)]; \
	print("bench-mpi: scaling efficiency at 2 ranks: %.0f%%" \
	  % (100 * r[1]["samples_per_s"] / (2 * r[0]["samples_per_s"])))'
.PHONY: bench-mpi

# `make bench-quantizers` (docs/benchmarks.md): the training step of the
# built-in default (`vqjepa bench --config builtin:default`) with each
# quantizer (NAME:KEY=VALUE,...), then a table of each one's time relative to
# the first, the step without VQ.
BENCH_QUANT_BATCH ?= 128
BENCH_QUANTIZERS := no_vq:object_encoder.vq_enabled=false \
  euclidean_beside: \
  straight_through:object_encoder.vq_path=straight_through \
  rotation:object_encoder.vq_path=straight_through,object_encoder.gradient_estimator=rotation \
  cosine:object_encoder.quantizer=cosine \
  code_dim_32:object_encoder.code_dim=32 \
  simvq:object_encoder.quantizer=simvq,object_encoder.dead_code_threshold=0 \
  fsq:object_encoder.quantizer=fsq,object_encoder.dead_code_threshold=0 \
  residual_2:object_encoder.quantizer=residual,object_encoder.num_quantizers=2 \
  grouped_2:object_encoder.num_groups=2
bench-quantizers: bin/vqjepa
	@mkdir -p build/bench-quantizers && rm -f build/bench-quantizers/*.jsonl
	@for v in $(BENCH_QUANTIZERS); do \
	  name=$${v%%:*}; args=""; \
	  for kv in $$(echo "$${v#*:}" | tr ',' ' '); do args="$$args --set $$kv"; done; \
	  echo "== $$name:$$args"; \
	  ./bin/vqjepa bench $(BENCH_DATA) --only train_step --config builtin:default \
	    --variant full --batch $(BENCH_QUANT_BATCH) --phases $(BENCH_TRAIN) $$args \
	    > build/bench-quantizers/$$name.jsonl || exit 1; \
	done
	@python3 tools/bench_quantizers.py \
	  $(foreach v,$(BENCH_QUANTIZERS),build/bench-quantizers/$(firstword $(subst :, ,$(v))).jsonl)
.PHONY: bench-quantizers

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 644 include/vqjepa.h include/vqjepa_stages.h include/vqjepa.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvqjepa.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	printf '%s\n' "$$PC_TEXT" > $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc
	install -m 755 bin/vqjepa $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/vqjepa.h $(DESTDIR)$(INCLUDEDIR)/vqjepa_stages.h \
	  $(DESTDIR)$(INCLUDEDIR)/vqjepa.hpp $(DESTDIR)$(LIBDIR)/libvqjepa.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc $(DESTDIR)$(BINDIR)/vqjepa

# The API reference (HTML in docs/api/) from the header comments; needs
# Debian's doxygen. Not part of `make check` (tests/header_docs_test.sh is).
docs: Doxyfile include/vqjepa.h include/vqjepa_stages.h include/vqjepa.hpp docs/bindings.md
	@command -v doxygen >/dev/null 2>&1 || { echo "make docs needs doxygen (apt-get install doxygen)" >&2; exit 1; }
	@mkdir -p docs/api
	VQJ_VERSION=$(VERSION) doxygen Doxyfile
	@echo "API reference: docs/api/index.html (warnings: docs/api/warnings.log)"

clean:
	rm -rf build lib bin
