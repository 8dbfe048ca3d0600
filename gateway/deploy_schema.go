package gateway

// The types below only document the start bodies in the OpenAPI document; the routes hand
// the raw body to the engine, whose config package is the one parser and validator. Unknown
// keys are allowed (they become warnings), hence additionalProperties everywhere.

type deploymentRequest struct {
	_           struct{}         `additionalProperties:"true"`
	Account     string           `json:"account" doc:"The agent identifier of the target cluster."`
	Application string           `json:"application" doc:"Names the application; one deployment of it runs at a time."`
	Namespace   string           `json:"namespace" required:"false" doc:"Overrides the manifests' namespace."`
	Manifests   []configManifest `json:"manifests"`
	Canary      *configCanary    `json:"canary,omitempty" doc:"A canary strategy; or blueGreen."`
	BlueGreen   *configBlueGreen `json:"blueGreen,omitempty" doc:"A blue/green strategy; or canary."`
	Context     map[string]any   `json:"context,omitempty"`
}

type configManifest struct {
	_       struct{}      `additionalProperties:"true"`
	Inline  *configInline `json:"inline,omitempty" doc:"One or more YAML documents."`
	Path    string        `json:"path,omitempty" doc:"A key of files (deploy.yml only)."`
	Targets []string      `json:"targets,omitempty" doc:"The targets it applies to; absent or empty means every target."`
}

type configInline struct {
	_     struct{} `additionalProperties:"true"`
	Value string   `json:"value"`
}

type configCanary struct {
	_     struct{}           `additionalProperties:"true"`
	Steps []configCanaryStep `json:"steps" required:"false"`
}

type configCanaryStep struct {
	_         struct{}         `additionalProperties:"true"`
	SetWeight *configSetWeight `json:"setWeight,omitempty"`
	Pause     *configPause     `json:"pause,omitempty"`
}

type configSetWeight struct {
	_      struct{} `additionalProperties:"true"`
	Weight int      `json:"weight" minimum:"0" maximum:"100" doc:"Never decreasing along the steps."`
}

type configDuration struct {
	_        struct{} `additionalProperties:"true"`
	Duration int64    `json:"duration"`
	Unit     string   `json:"unit" doc:"SECONDS, MINUTES or HOURS, in any case."`
}

type configPause struct {
	_                  struct{}        `additionalProperties:"true"`
	Duration           int64           `json:"duration,omitempty" doc:"For a timed pause, in unit; 0 with untilApproved."`
	Unit               string          `json:"unit,omitempty" doc:"SECONDS, MINUTES, HOURS, or NONE with untilApproved; any case."`
	UntilApproved      bool            `json:"untilApproved,omitempty" doc:"Wait for an approval instead of a duration."`
	RequiresRoles      []string        `json:"requiresRoles,omitempty" doc:"An approver needs one of these roles."`
	ApprovalExpiration *configDuration `json:"approvalExpiration,omitempty" doc:"An unanswered approval fails the pipeline after this."`
}

type configCondition struct {
	_     struct{}     `additionalProperties:"true"`
	Pause *configPause `json:"pause,omitempty"`
}

type configBlueGreen struct {
	_                       struct{}          `additionalProperties:"true"`
	ActiveService           string            `json:"activeService" doc:"A Service among the target's manifests."`
	PreviewService          string            `json:"previewService,omitempty"`
	RedirectTrafficAfter    []configCondition `json:"redirectTrafficAfter,omitempty"`
	ShutDownOldVersionAfter []configCondition `json:"shutDownOldVersionAfter,omitempty"`
}

type pipelineConfig struct {
	_                struct{}                  `additionalProperties:"true"`
	Version          string                    `json:"version,omitempty" doc:"v1 (the default)."`
	Kind             string                    `json:"kind,omitempty" doc:"kubernetes (the default); other kinds are 422."`
	Application      string                    `json:"application" doc:"Names the application; scopes in-progress conflicts."`
	Targets          map[string]configTarget   `json:"targets"`
	Manifests        []configManifest          `json:"manifests"`
	Strategies       map[string]configStrategy `json:"strategies,omitempty"`
	DeploymentConfig *configDeploymentConfig   `json:"deploymentConfig,omitempty"`
	Files            map[string][]string       `json:"files,omitempty" doc:"Manifest path -> file contents, as the Armory CLI inlines them."`
	Context          map[string]string         `json:"context,omitempty"`
	TargetFilters    []map[string]string       `json:"targetFilters,omitempty" doc:"[{\"includeTarget\": name}]: deploy only these targets."`
	SourceControl    map[string]any            `json:"sourceControl,omitempty" doc:"Stored and echoed."`
	Webhooks         []map[string]any          `json:"webhooks,omitempty" doc:"Not built yet: a non-empty value is 422."`
	Analysis         map[string]any            `json:"analysis,omitempty" doc:"Not built yet: a non-empty value is 422."`
	Traffic          []map[string]any          `json:"trafficManagement,omitempty" doc:"Not built yet: a non-empty value is 422."`
}

type configTarget struct {
	_           struct{}           `additionalProperties:"true"`
	Account     string             `json:"account" doc:"An agent identifier of the caller's environment."`
	Namespace   string             `json:"namespace,omitempty"`
	Strategy    string             `json:"strategy,omitempty" doc:"A key of strategies."`
	Constraints *configConstraints `json:"constraints,omitempty"`
}

type configConstraints struct {
	_                struct{}          `additionalProperties:"true"`
	DependsOn        []string          `json:"dependsOn,omitempty" doc:"Targets that must succeed first."`
	BeforeDeployment []configCondition `json:"beforeDeployment,omitempty"`
	AfterDeployment  []configCondition `json:"afterDeployment,omitempty"`
}

type configStrategy struct {
	_         struct{}         `additionalProperties:"true"`
	Canary    *configCanary    `json:"canary,omitempty"`
	BlueGreen *configBlueGreen `json:"blueGreen,omitempty"`
}

type configDeploymentConfig struct {
	_                      struct{}          `additionalProperties:"true"`
	Timeout                *configDuration   `json:"timeout,omitempty"`
	IfDeploymentInProgress *configInProgress `json:"ifDeploymentInProgress,omitempty"`
	KeepDeploymentObject   bool              `json:"keepDeploymentObject,omitempty"`
}

type configInProgress struct {
	_        struct{} `additionalProperties:"true"`
	Strategy string   `json:"strategy" doc:"reject (the default) or enqueueOne, in any case."`
}
