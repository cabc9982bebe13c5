##@ NetworkPolicy semantics
.PHONY: test-netpol netpol-update

# Part of `make test` (go test ./... runs test/netpol); this target prints the truth tables.
test-netpol: ## Truth tables of the generated NetworkPolicies through the cyclonus analyzer, checked against the specs.
	go test -count=1 -v -run '^(TestNetworkPolicyTruthTables|TestViolationsAreCaught)$$' ./test/netpol/

netpol-update: ## After a reviewed change of the NetworkPolicy builder: rewrite test/netpol/testdata/truth-tables.txt.
	go test -count=1 ./test/netpol/ -update
