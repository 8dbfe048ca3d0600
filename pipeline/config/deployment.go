package config

// ParseDeployment parses and validates the body of POST /deployments/kubernetes, the
// single-target request of the Spinnaker "Kubernetes Progressive" stage:
//
//	{"account": "prod-west", "application": "web", "namespace": "web",
//	 "manifests": [{"inline": {"value": "<YAML documents>"}}],
//	 "canary": {"steps": [{"setWeight": {"weight": 25}},
//	                      {"pause": {"duration": 0, "unit": "NONE", "untilApproved": true}}]}}
//
// with "blueGreen" in place of "canary" for a blue/green rollout. The Request has one target,
// named after the account, whose StrategyName is "canary" or "blueGreen". Errors are as for
// [ParsePipeline]; paths are relative to this body (canary.steps[1].pause.unit).
func ParseDeployment(body []byte) (*Request, []Warning, error) {
	root, err := decodeBody(body)
	if err != nil {
		return nil, nil, err
	}
	p := &parser{}
	req := p.deployment(root)
	if err := p.result(); err != nil {
		return nil, p.warnings, err
	}
	return req, p.warnings, nil
}

func (p *parser) deployment(root *object) *Request {
	p.unknown(root, "", "account", "application", "namespace", "manifests", "canary", "blueGreen")
	req := &Request{Version: "v1", Kind: "kubernetes", InProgress: Reject}
	p.header(root, req) // only application is there; version and kind would be unknown keys
	t := &target{Target: Target{}, path: ""}
	t.Account = p.account(root, "")
	t.Name = t.Account
	t.Namespace = p.namespace(root, "")
	if def := p.strategyIn(root, "", "canary"); def != nil {
		t.def = def
		t.Canary, t.BlueGreen = def.canary, def.blueGreen
		t.StrategyName = "canary"
		if def.blueGreen != nil {
			t.StrategyName = "blueGreen"
		}
	}
	var entries []manifestEntry
	if v, ok := root.get("manifests"); !ok {
		p.fail("manifests", `is required: [{"inline": {"value": "<YAML documents>"}}]`)
	} else {
		entries = p.manifests(v, nil, true, nil)
	}
	if t.Name != "" {
		p.assign([]*target{t}, entries)
	}
	if len(p.problems) > 0 {
		return nil
	}
	req.Targets = []Target{t.Target}
	return req
}
