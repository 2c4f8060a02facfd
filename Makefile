# The two commands of README.md.
.PHONY: demo test
demo:
	bash scripts/demo.sh
test:
	bash scripts/test-all.sh

# Mutation testing (cargo-mutants; docs/TESTING.md): small deliberate bugs,
# one at a time, each must make a test fail. Slow (minutes to an hour per
# area on 2 cores), so not part of `make test`. Pick what to mutate:
#   make mutants AREA=formats      the format library, its own tests
#   make mutants AREA=tools        dmaplay's slot, verify, reindex and scan logic
#   make mutants AREA=recorder     the recorder's pure modules
#   make mutants FILE=recorder/src/record.rs TESTS="dmarec-recorder dmarec-tests"
#   make mutants AREA=tools MUTANTS_ARGS="--re missing_in_window"
# Results land in mutants.out/<name>/ (missed.txt: the survivors).
MUTANTS_VERSION ?= 27.1.0
MUTANTS_formats_TIMEOUT := 60
MUTANTS_formats_FILES := formats/src/*.rs
MUTANTS_formats_TESTS := dmarec-formats
MUTANTS_tools_FILES := tools/src/verify.rs tools/src/reindex.rs tools/src/scan.rs \
	tools/src/select.rs tools/src/stripe.rs tools/src/catalog.rs
MUTANTS_tools_TESTS := dmarec-tools dmarec-tests
MUTANTS_recorder_FILES := recorder/src/status.rs recorder/src/readback.rs \
	recorder/src/target.rs recorder/src/source/handoff.rs
MUTANTS_recorder_TESTS := dmarec-recorder dmarec-tests
MUTANTS_FILES = $(if $(FILE),$(FILE),$(MUTANTS_$(AREA)_FILES))
MUTANTS_TESTS = $(if $(TESTS),$(TESTS),$(if $(AREA),$(MUTANTS_$(AREA)_TESTS),dmarec-formats dmarec-recorder dmarec-tools dmarec-tests))
MUTANTS_NAME = $(if $(FILE),$(subst /,_,$(basename $(FILE))),$(AREA))
.PHONY: mutants
mutants:
	@test -n "$(MUTANTS_FILES)" || { echo "make mutants: give AREA=formats|tools|recorder or FILE=path/to/file.rs"; exit 2; }
	@command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants@$(MUTANTS_VERSION)
	mkdir -p mutants.out
	RUST_BACKTRACE=0 PROPTEST_MAX_SHRINK_ITERS=0 cargo mutants -j 1 \
		--timeout $(or $(MUTANTS_TIMEOUT),$(MUTANTS_$(AREA)_TIMEOUT),600) --output mutants.out/$(MUTANTS_NAME) \
		$(foreach f,$(MUTANTS_FILES),--file '$(f)') \
		$(foreach t,$(MUTANTS_TESTS),--test-package $(t)) $(MUTANTS_ARGS)
