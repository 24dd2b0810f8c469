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
DEPS := openblas jansson
DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS))
DEPS_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS)) -lm -lpthread
WARN := -Wall -Wextra -Werror
CPPFLAGS += -Iinclude -Isrc -D_POSIX_C_SOURCE=200809L
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 $(WARN) -fPIC -fvisibility=hidden $(DEPS_CFLAGS)

CUDA ?= 0
ifeq ($(CUDA),1)
NVCC ?= nvcc
CPPFLAGS += -DVQJ_WITH_CUDA
CUDA_SRC := $(wildcard cuda/*.cu)
CUDA_OBJ := $(CUDA_SRC:%.cu=build/%.o)
DEPS_LIBS += -L/usr/local/cuda/lib64 -lcublas -lcudart
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

build/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/cuda/%.o: cuda/%.cu $(wildcard include/*.h src/*/*.h cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Iinclude -Isrc -DVQJ_WITH_CUDA \
	  -gencode arch=compute_90,code=sm_90 -c $< -o $@

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
Libs.private: -lm -lpthread
Cflags: -I$${includedir}
endef
export PC_TEXT
$(PCFILE): Makefile include/vqjepa.h
	@mkdir -p lib/pkgconfig
	printf '%s\n' "$$PC_TEXT" > $@

# Programs link the static library: the CLI and the tests may use internal
# (vqji_) functions that the shared library does not export.
bin/vqjepa: $(TOOL_SRC) $(STATIC)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(TOOL_SRC) $(STATIC) $(DEPS_LIBS)

bin/test_%: tests/test_%.c tests/testutil.h $(STATIC)
	@mkdir -p bin
	@echo "LD $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(STATIC) $(DEPS_LIBS) $(shell $(PKG_CONFIG) --libs cmocka)

bin/example_%: examples/%.c $(SHARED) lib/libvqjepa.so
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< -Llib -lvqjepa -Wl,-rpath,'$$ORIGIN/../lib'

examples: $(EXAMPLE_BIN)

# Every test program runs even when an earlier one fails; the summary line
# counts the programs.
check: all $(TEST_BIN) examples
	@passed=0; failed=0; failures=""; \
	for t in $(TEST_BIN) $(EXAMPLE_BIN) tests/install_test.sh tests/cli_test.sh; do \
	  echo "== $$t"; \
	  case $$t in *.sh) cmd="sh $$t";; *) cmd="./$$t";; esac; \
	  if CC="$(CC)" CXX="$(CXX)" VQJ_ARC_DATA=$(ARC_DATA) $$cmd; then passed=$$((passed+1)); \
	  else failed=$$((failed+1)); failures="$$failures $$t"; fi; \
	done; \
	echo "check: $$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ] || { echo "failed:$$failures"; exit 1; }
test: check

bench: all
	./bin/vqjepa bench --data $(ARC_DATA)

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 644 include/vqjepa.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvqjepa.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	printf '%s\n' "$$PC_TEXT" > $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc
	install -m 755 bin/vqjepa $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/vqjepa.h $(DESTDIR)$(LIBDIR)/libvqjepa.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/vqjepa.pc $(DESTDIR)$(BINDIR)/vqjepa

clean:
	rm -rf build lib bin
