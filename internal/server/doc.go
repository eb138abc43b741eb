// Package server is the management server (`vdc server`): the REST API
// under /api/v1, authentication, the task runner, host liveness and the
// placement of VMs. All state lives in etcd through internal/store; one
// server at a time is the leader (etcd election) and runs tasks and
// controllers, every server answers the API.
package server
