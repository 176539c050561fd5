# orderexp: PGXS build and tests
#
#   make && make install
#   make installcheck     pg_regress, isolation and TAP tests against the
#                         cluster named by PGHOST/PGPORT/PGUSER
#
# scripts/test.sh does all of it on a fresh machine, throwaway cluster included.

EXTENSION = orderexp
MODULE_big = orderexp
# orderexp.c is the module's entry point (_PG_init, GUCs); src/ one concern a file
OBJS = orderexp.o $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(wildcard sql/orderexp--*.sql)
# upgrade scripts assembled from one file per feature (sql/upgrade-<version>/)
DATA_built = orderexp--1.0--1.1.sql
UPGRADE_1_1 = $(sort $(wildcard sql/upgrade-1.1/*.sql))
PGFILEDESC = "orderexp - close expired unpaid orders"

# pg_regress: test/sql/<name>.sql against test/expected/<name>.out
REGRESS = setup policy operations sweep errors reminders tokens delivery bad_input reopen audit stats partitioned status_types tenants withheld explain channels outcome_count batches plain rotation
# isolation: test/specs/<name>.spec against test/expected/<name>.out
ISOLATION = payment_race concurrent_sweeps cancel_race claim_race outcome_race batch_race timer_reuse plain_race rotation_race busy_keys tid_race plain_delete sweep_notify registration_cache fk_lock policy_cache
REGRESS_OPTS = --inputdir=test
ISOLATION_OPTS = --inputdir=test
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS = -I$(srcdir) -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

orderexp--1.0--1.1.sql: $(UPGRADE_1_1)
	cat $^ > $@

# PGXS tracks no header dependencies unless PostgreSQL was configured with
# --enable-depend (Debian's is not): a changed header rebuilds every object,
# or one compiled against the old layout of a struct would read it wrong
$(OBJS): orderexp.h $(wildcard src/*.h)

# orderexp-relay (relay/): a program, so it has a Makefile of its own (PGXS
# builds one kind of target per Makefile); built, installed into
# `pg_config --bindir` and cleaned with the extension
all: relay-all
install: relay-install
clean: relay-clean
uninstall: relay-uninstall

relay-all relay-install relay-clean relay-uninstall: relay-%:
	$(MAKE) -C relay PG_CONFIG='$(PG_CONFIG)' $(if $(filter all,$*),,$*)

.PHONY: relay-all relay-install relay-clean relay-uninstall
