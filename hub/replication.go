package hub

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	replicationv1 "github.com/sortie-dev/sortie/gen/sortie/hub/replication/v1"
)

// agentRecord is a as replicas share it.
func agentRecord(a Agent) *replicationv1.AgentRecord {
	return &replicationv1.AgentRecord{
		AgentIdentifier:       a.AgentIdentifier,
		AgentInstanceUuid:     a.AgentInstanceUUID,
		AgentVersion:          a.AgentVersion,
		ClientId:              a.ClientID,
		ConnectedAt:           timestamppb.New(a.ConnectedAt),
		LastHeartbeatAt:       timestamppb.New(a.LastHeartbeatAt),
		OrgId:                 a.OrgID,
		EnvId:                 a.EnvID,
		HubInstanceUuid:       a.HubInstanceUUID,
		StreamId:              a.StreamID,
		IpAddress:             a.IPAddress,
		NodeIp:                a.NodeIP,
		K8SClusterRoleSupport: a.K8sClusterRoleSupport,
		KubernetesVersion:     a.KubernetesVersion,
	}
}

// agentFrom is the Agent of a shared record.
func agentFrom(r *replicationv1.AgentRecord) Agent {
	return Agent{
		AgentIdentifier:       r.GetAgentIdentifier(),
		AgentInstanceUUID:     r.GetAgentInstanceUuid(),
		AgentVersion:          r.GetAgentVersion(),
		ClientID:              r.GetClientId(),
		ConnectedAt:           r.GetConnectedAt().AsTime(),
		LastHeartbeatAt:       r.GetLastHeartbeatAt().AsTime(),
		OrgID:                 r.GetOrgId(),
		EnvID:                 r.GetEnvId(),
		HubInstanceUUID:       r.GetHubInstanceUuid(),
		StreamID:              r.GetStreamId(),
		IPAddress:             r.GetIpAddress(),
		NodeIP:                r.GetNodeIp(),
		K8sClusterRoleSupport: r.GetK8SClusterRoleSupport(),
		KubernetesVersion:     r.GetKubernetesVersion(),
	}
}

// encodeAgent is the presence record of a.
func encodeAgent(a Agent) []byte {
	b, _ := proto.Marshal(agentRecord(a)) // only strings, bools and timestamps: cannot fail
	return b
}

// decodeAgent reads a presence record.
func decodeAgent(b []byte) (Agent, error) {
	var r replicationv1.AgentRecord
	if err := proto.Unmarshal(b, &r); err != nil {
		return Agent{}, fmt.Errorf("decode presence record: %w", err)
	}
	if r.StreamId == "" || r.AgentIdentifier == "" {
		return Agent{}, fmt.Errorf("decode presence record: no stream id or agent identifier")
	}
	return agentFrom(&r), nil
}

func eventType(t AgentEventType) replicationv1.AgentEvent_Type {
	switch t {
	case AgentConnected:
		return replicationv1.AgentEvent_TYPE_CONNECTED
	case AgentDisconnected:
		return replicationv1.AgentEvent_TYPE_DISCONNECTED
	}
	return replicationv1.AgentEvent_TYPE_UNSPECIFIED
}

// agentEventType is the AgentEventType of t; 0 when unknown.
func agentEventType(t replicationv1.AgentEvent_Type) AgentEventType {
	switch t {
	case replicationv1.AgentEvent_TYPE_CONNECTED:
		return AgentConnected
	case replicationv1.AgentEvent_TYPE_DISCONNECTED:
		return AgentDisconnected
	}
	return 0
}
