package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/errgroup"

	deployv1 "github.com/sortie-dev/sortie/gen/sortie/deploy/v1"
	"github.com/sortie-dev/sortie/gen/sortie/deploy/v1/deployv1connect"
)

// transitions is when the engine recorded a pipeline's target entering PAUSED and the
// pipeline entering SUCCEEDED, from its event history; zero when absent.
type transitions struct {
	paused, succeeded time.Time
}

// recordedTransitions reads the history of every pipeline of ids through
// DeploymentService.ListPipelineEvents, whose timestamps keep the engine's full precision
// (the REST history rounds to seconds), after the run so that it adds no load to it.
func recordedTransitions(ctx context.Context, baseURL, token string, ids []string, concurrency int) ([]transitions, error) {
	client := deployv1connect.NewDeploymentServiceClient(&http.Client{Timeout: time.Minute}, baseURL)
	out := make([]transitions, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i, id := range ids {
		g.Go(func() error {
			req := connect.NewRequest(&deployv1.ListPipelineEventsRequest{Id: id})
			req.Header().Set("Authorization", "Bearer "+token)
			resp, err := client.ListPipelineEvents(gctx, req)
			if err != nil {
				return fmt.Errorf("events of pipeline %s: %w", id, err)
			}
			for _, ev := range resp.Msg.GetEvents() {
				switch {
				case ev.GetType() == "target.status" && ev.GetStatus() == deployv1.Status_STATUS_PAUSED && out[i].paused.IsZero():
					out[i].paused = ev.GetTime().AsTime()
				case ev.GetType() == "pipeline.status" && ev.GetStatus() == deployv1.Status_STATUS_SUCCEEDED && out[i].succeeded.IsZero():
					out[i].succeeded = ev.GetTime().AsTime()
				}
			}
			return nil
		})
	}
	return out, g.Wait()
}
