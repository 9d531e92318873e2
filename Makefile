# sqlgate — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
# build, vet, the tools (golangci-lint compiles the dependencies through go
# list -export), bench-once, the image and deploy-test compile with the same
# settings (no cgo, -trimpath), so a cold CI compiles the dependencies once for
# all of them; only the race-enabled tests need a second build.
NOCGO := CGO_ENABLED=0
TRIM := -trimpath
TOOLS := $(NOCGO) GOFLAGS="$(GOFLAGS) $(TRIM)" $(GO) tool -modfile=deploy/tools.mod
DATA_DIR ?= .sqlgate
FUZZTIME ?= 30s
# Sized for 2 cores: packages run 2 at a time, tests inside them in parallel.
TEST_FLAGS ?= -shuffle=on -p 2 -timeout 15m
# The tests run with the race detector, which needs cgo and a C compiler (gcc;
# on Debian: build-essential). Without one they run without -race and say so;
# CI has gcc. RACE_FLAG prints -race, or the reason on stderr and nothing.
RACE_FLAG := cc="$$($(GO) env CC)"; \
  if ! command -v "$${cc%% *}" >/dev/null 2>&1; then echo "make: no C compiler ($$cc) for the race detector: running the tests without -race (install gcc; Debian: build-essential)" >&2; \
  elif [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then echo "make: cgo is disabled (CGO_ENABLED=0): running the tests without -race" >&2; \
  else echo -race; fi

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/sqlgated and bin/sqlgate
	$(NOCGO) $(GO) build $(TRIM) -o bin/ ./cmd/sqlgated ./cmd/sqlgate

.PHONY: run
run: build ## start everything embedded (dev mode), state in .sqlgate (or DATA_DIR=dir); prints what to do next
	./bin/sqlgated dev --data-dir $(DATA_DIR)

.PHONY: test
test: ## unit and in-process integration tests (no services needed; -race when gcc is installed)
	@race=$$($(RACE_FLAG)); echo "$(GO) test $$race $(TEST_FLAGS) ./..."; $(GO) test $$race $(TEST_FLAGS) ./...

.PHONY: test-integration
test-integration: ## tests against real services: set SQLGATE_TEST_POSTGRES_DSN (and SQLGATE_TEST_SQLSERVER_DSN, SQLGATE_TEST_CHROMIUM)
	@test -n "$$SQLGATE_TEST_POSTGRES_DSN" || { echo "set SQLGATE_TEST_POSTGRES_DSN, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; exit 2; }
	@race=$$($(RACE_FLAG)); echo "$(GO) test $$race $(TEST_FLAGS) ./..."; $(GO) test $$race $(TEST_FLAGS) ./...

.PHONY: vet
vet: ## go vet
	$(NOCGO) $(GO) vet $(TRIM) ./...

.PHONY: lint
lint: ## golangci-lint (pinned in deploy/tools.mod)
	$(TOOLS) golangci-lint run ./...

.PHONY: fmt
fmt: ## format the code (gofumpt, gci)
	$(TOOLS) golangci-lint fmt ./...

.PHONY: fmt-check
# The exit status decides, not the output: on a fresh machine the go command
# prints its module downloads on stderr before the tool runs.
fmt-check: ## fail when a file is not formatted
	@$(TOOLS) golangci-lint fmt --diff ./... || { echo "run: make fmt"; exit 1; }

# Minimizing a new input runs up to a minute by default, during which a
# target with large seeds (an evidence archive) makes no progress.
.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	  done; done

BENCH_ARGS ?= --duration 5s --rounds 2 --concurrency 1,16,64 --rate 500 --durable 1,64

.PHONY: bench
bench: build ## request path vs the bare path (SQLite; PostgreSQL when SQLGATE_TEST_POSTGRES_DSN is set), then the hot steps
	./bin/sqlgated bench $(BENCH_ARGS)
	@echo; echo "== hot steps: identify+route+validate+decide+audit+execute (in-memory), decide, validate, mint, callout, verify, audit"
	$(GO) test -run '^$$' -bench 'BenchmarkHandle|BenchmarkDecide|BenchmarkDecode$$|BenchmarkMintUser|BenchmarkCalloutConnect|BenchmarkVerify$$|BenchmarkVerifyCached|BenchmarkLogAppendNoIO|BenchmarkMarshalCanonical|BenchmarkHashParams|BenchmarkRoundTrip' -benchmem ./broker/ ./broker/route/ ./broker/natsauth/ ./broker/natsvc/ ./policy/opa/ ./audit/ ./identity/oidc/
	$(GO) test -run '^$$' -bench 'BenchmarkVerifyBundle1M' -benchtime 1x ./audit/
	$(GO) test -run '^$$' -bench 'BenchmarkAppendDurable' -benchtime 2s ./audit/sqlstore/
	$(GO) test -run '^$$' -bench 'BenchmarkAppendOpenLoop' -benchtime 1x ./audit/sqlstore/
	$(GO) test -run '^$$' -bench 'BenchmarkExecute|BenchmarkBareCall' -benchmem ./broker/sqlite/ ./broker/postgres/
	$(GO) test -run '^$$' -bench 'BenchmarkWrite' -benchtime 2x ./audit/evidence/

# The container image: static binaries for linux/IMAGE_ARCH in a one-layer
# image built without a container engine (deploy/image).
IMAGE ?= ghcr.io/sqlgate/sqlgated
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# The CA bundle the image trusts. Empty (the default): Mozilla's NSS roots from
# golang.org/x/crypto/x509roots/fallback at the version go.sum pins, the same on
# every build machine; the machine's /etc/ssl is never read. A PEM file: that
# bundle instead, an operator's explicit choice (a private CA). The labels
# io.github.sqlgate.ca-certificates.{sha256,source} name the bundle an image holds.
CA_CERTS ?=

.PHONY: image
image: ## the container image as a docker-archive tarball: bin/sqlgated-image.tar (docker load -i, podman load -i, crane push)
	$(NOCGO) GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build $(TRIM) -ldflags "-s -w -buildid= -X main.version=$(VERSION)" \
	  -o bin/image/linux_$(IMAGE_ARCH)/ ./cmd/sqlgated ./cmd/sqlgate
	$(NOCGO) $(GO) run $(TRIM) ./deploy/image --arch $(IMAGE_ARCH) \
	  --sqlgated bin/image/linux_$(IMAGE_ARCH)/sqlgated --sqlgate bin/image/linux_$(IMAGE_ARCH)/sqlgate \
	  --tag $(IMAGE):$(VERSION) --version $(VERSION) --revision "$(REVISION)" --source-date $(SOURCE_DATE_EPOCH) $(if $(CA_CERTS),--ca-certs "$(CA_CERTS)") \
	  --out bin/sqlgated-image.tar

# helm's default Kubernetes version, for `helm template` and `helm lint` without
# --kube-version, is 1.20 unless set at link time, and the chart's kubeVersion
# (>=1.25) refuses it: set it as helm's own Makefile does, from the client-go it
# is built with (v0.N.x is Kubernetes 1.N).
HELM_K8S_MINOR = $(shell awk '$$1 == "k8s.io/client-go" { split($$2, v, "."); print v[2] }' deploy/helm-tools.mod)
HELM_LDFLAGS = $(foreach p,pkg/lint/rules pkg/chartutil,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=$(HELM_K8S_MINOR))

bin/helm: deploy/helm-tools.mod deploy/helm-tools.sum
	$(GO) build -modfile=deploy/helm-tools.mod -ldflags "$(HELM_LDFLAGS)" -o bin/helm helm.sh/helm/v3/cmd/helm

.PHONY: deploy-test
deploy-test: image bin/helm ## check the image (valid, static; run under podman when installed) and the Helm chart (lint, render, serve --check on its output, its pod under podman)
	SQLGATE_TEST_IMAGE=$(CURDIR)/bin/sqlgated-image.tar SQLGATE_TEST_HELM=$(CURDIR)/bin/helm \
	SQLGATE_TEST_PODMAN="$$(command -v podman || true)" \
	  $(NOCGO) $(GO) test $(TRIM) -count=1 -v -run '^(TestImage|TestHelmChart)' ./deploy/image/ ./cmd/sqlgated/

.PHONY: bench-once
bench-once: ## every Go benchmark once, so they keep compiling
	$(NOCGO) $(GO) test $(TRIM) -run '^$$' -bench . -benchtime 1x ./...

.PHONY: cover
cover: ## test coverage report in coverage.html
	$(GO) test -coverprofile=coverage.out ./... && $(GO) tool cover -html=coverage.out -o coverage.html

.PHONY: generate
generate: ## go generate
	$(GO) generate ./...

.PHONY: check-clean
check-clean: generate ## fail when generate or go mod tidy change anything
	$(GO) mod tidy
	git diff --exit-code -- . ':(exclude)coverage*'

.PHONY: vuln
vuln: ## govulncheck (needs the vulnerability database online; not part of CI here)
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 ./...

.PHONY: ci
CI_STEPS := fmt-check vet lint test bench-once check-clean
ci: $(CI_STEPS) ## everything CI runs (.ci/run adds the services)

.PHONY: ci-steps
ci-steps: ## list the steps of make ci (.ci/run times each)
	@echo $(CI_STEPS)
