# ackd build. `make` builds build/release/ackd; `make SANITIZE=address,undefined`
# builds an instrumented tree into build/san; `make test` runs everything
# (scripts/test); `make run` starts the seed scenario; `make fuzz` fuzzes.

CC ?= cc
SANITIZE ?=
FUZZ ?=

ifneq ($(FUZZ),)
  CC := clang
  B := build/fuzz
  SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -DACKD_FUZZ=1
else ifneq ($(SANITIZE),)
  B := build/san
  SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
else
  B := build/release
  SANFLAGS :=
endif

LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS := -std=gnu11 -O2 -g $(WARN) -Isrc -I$(LLHTTP_INC) -D_GNU_SOURCE -MMD -MP $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS) $(EXTRA_LDFLAGS)
LIBS := -luv -lsqlite3 -ljansson -lcurl -lcrypto -linih -lpthread -lm

SRC := $(shell find src -name '*.c' ! -path src/main.c | sort)
OBJ := $(SRC:%.c=$(B)/%.o)
UNIT_SRC := $(shell find tests/unit -name '*.c' | sort)
UNIT_OBJ := $(UNIT_SRC:%.c=$(B)/%.o)
EX_PAYMENTS_SRC := $(wildcard examples/payments/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/%)

.PHONY: all deps test run fuzz clean format unit
# keep intermediate objects (the fuzz targets link them straight from %.o)
.SECONDARY:
ifneq ($(FUZZ),)
all: $(FUZZ_BIN)
else
all: $(B)/ackd $(B)/unit_tests $(if $(EX_PAYMENTS_SRC),$(B)/payments)
endif

$(B)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -w -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) $(SANFLAGS) -c $< -o $@

$(B)/libllhttp.a: $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o
	ar rcs $@ $^

$(B)/libackd.a: $(OBJ)
	ar rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/ackd: $(B)/src/main.o $(B)/libackd.a $(B)/libllhttp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/unit_tests: $(UNIT_OBJ) $(B)/libackd.a $(B)/libllhttp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/payments: $(EX_PAYMENTS_SRC:%.c=$(B)/%.o) $(B)/libackd.a $(B)/libllhttp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/%_fuzz: $(B)/tests/fuzz/%_fuzz.o $(B)/libackd.a $(B)/libllhttp.a
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

deps:
	@scripts/install-deps

unit: $(B)/unit_tests
	$(B)/unit_tests

test: deps
	@scripts/test

run: deps
	@scripts/run

fuzz: deps
	@scripts/fuzz

format:
	clang-format -i $$(find src tests examples -name '*.[ch]')

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(B)/src/main.d
