package server_test

import "github.com/vdc-project/vdc/client"

func clientTaskQuery() client.TaskQuery { return client.TaskQuery{} }
