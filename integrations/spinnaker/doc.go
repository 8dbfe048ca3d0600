// Package spinnaker holds what a Spinnaker installation needs to deploy through Sortie: the
// preconfigured webhook stage for Orca (orca-webhook-stage.yml) and the guide to pointing the
// Armory.Deployments plugin at Sortie (README.md). Its tests replay the requests the webhook
// stage and the plugin send, to the URLs those files configure, against a real sortie-server
// with a simulated agent, and check every reply field they read, so neither file can drift
// from the API.
package spinnaker
