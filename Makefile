# The two commands of README.md.
.PHONY: demo test
demo:
	bash scripts/demo.sh
test:
	bash scripts/test-all.sh
