# The two commands of README.md.
.PHONY: demo test
demo:
	bash scripts/demo.sh
test:
	bash scripts/test-all.sh

# make install (DESTDIR, PREFIX), make deb: packaging/install.mk.
include packaging/install.mk

# Mutation testing (cargo-mutants; docs/TESTING.md): small deliberate bugs,
# one at a time, each must make a test fail. Slow (minutes to an hour per
# area on 2 cores), so not part of `make test`. Pick what to mutate:
#   make mutants AREA=formats      the format library, its own tests
#   make mutants AREA=tools        dmaplay's slot selection, verify, reindex, scan
#   make mutants AREA=recorder     the recorder's pure modules
#   make mutants FILE=recorder/src/record.rs   one file, with its area's tests
#   make mutants FILE=recorder/src/record.rs TEST_ARGS="--lib --test no_alloc* \
#        --test cli* --test record* --test crash* --test reliability*"
#   make mutants AREA=tools MUTANTS_ARGS="--re missing_in_window"
#   make mutants AREA=formats MUTANTS_ARGS=--iterate   (only last run's survivors)
# Results land in mutants.out/<name>/mutants.out/ (missed.txt: the survivors).
MUTANTS_VERSION ?= 27.1.0

MUTANTS_formats_FILES := formats/src/*.rs
MUTANTS_formats_TESTS := dmarec-formats
MUTANTS_formats_TIMEOUT := 30

# dmaplay's unit and CLI tests and its end-to-end tests on files. The
# loop-device tests (root, ~15 s more per mutant) and the crash tests (SIGKILL
# timing) are left out of the area run. The end-to-end tests run the dmaplay
# and dmarec binaries, which cargo builds only for an integration test of
# their own package: hence tools' cli and recorder's no_alloc. Test targets
# are globs: a plain --test NAME fails in the packages that lack it.
MUTANTS_tools_FILES := tools/src/verify.rs tools/src/reindex.rs tools/src/scan.rs \
	tools/src/select.rs
MUTANTS_tools_TESTS := dmarec-tools dmarec-tests dmarec-recorder
MUTANTS_tools_TEST_ARGS := --lib --test cli* --test no_alloc* --test dmaplay_file*
MUTANTS_tools_TIMEOUT := 180

# The recorder's unit tests, no_alloc and the end-to-end recording tests
# (tests/tests/record.rs; its refusal tests need root for loop devices).
MUTANTS_recorder_FILES := recorder/src/status.rs recorder/src/readback.rs \
	recorder/src/target.rs recorder/src/source/handoff.rs
MUTANTS_recorder_TESTS := dmarec-recorder dmarec-tests dmarec-tools
MUTANTS_recorder_TEST_ARGS := --lib --test no_alloc* --test cli* --test record*
MUTANTS_recorder_TIMEOUT := 180

# FILE=<area>/... takes its area's tests and timeout.
MUTANTS_AREA = $(or $(AREA),$(firstword $(subst /, ,$(FILE))))
MUTANTS_FILES = $(or $(FILE),$(MUTANTS_$(MUTANTS_AREA)_FILES))
MUTANTS_TESTS = $(or $(TESTS),$(MUTANTS_$(MUTANTS_AREA)_TESTS))
MUTANTS_TEST_ARGS = $(foreach a,$(or $(TEST_ARGS),$(MUTANTS_$(MUTANTS_AREA)_TEST_ARGS)),'$(a)')
MUTANTS_TIMEOUT_S = $(or $(MUTANTS_TIMEOUT),$(MUTANTS_$(MUTANTS_AREA)_TIMEOUT),600)
MUTANTS_NAME = $(if $(FILE),$(subst /,_,$(basename $(FILE))),$(AREA))
comma := ,
.PHONY: mutants
mutants:
	@test -n "$(MUTANTS_FILES)" -a -n "$(MUTANTS_TESTS)" || { echo "make mutants: give AREA=formats|tools|recorder or FILE=<area>/path.rs (or TESTS=packages)"; exit 2; }
	@command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@$(MUTANTS_VERSION)
	mkdir -p mutants.out
	@# The unmutated tree must pass the same tests. (cargo-mutants' own
	@# baseline runs only the mutated package's tests, without TEST_ARGS.)
	RUST_BACKTRACE=0 cargo test -q --profile mutants \
		$(foreach t,$(MUTANTS_TESTS),-p $(t)) $(MUTANTS_TEST_ARGS)
	RUST_BACKTRACE=0 PROPTEST_MAX_SHRINK_ITERS=0 cargo mutants -j 1 --baseline skip \
		--timeout $(MUTANTS_TIMEOUT_S) --output mutants.out/$(MUTANTS_NAME) \
		$(foreach f,$(MUTANTS_FILES),--file '$(f)') \
		--test-package $(subst $(eval) ,$(comma),$(strip $(MUTANTS_TESTS))) \
		$(foreach a,$(MUTANTS_TEST_ARGS),--cargo-test-arg=$(a)) \
		$(MUTANTS_ARGS)
