// Package control holds the management server's services, one job per
// package; internal/server is only their HTTP front and the process that
// wires them. A newcomer finds a capability here in one hop:
//
//	state        typed reads and retrying writes over the store and its cache; the VM tally
//	retry        the one way to try again (conflicts, paced retries), ctx honoured
//	auth         who a request acts as: Authenticator (API tokens, sessions, passwords), principal in ctx
//	authz        privileges, roles, and effective rights over the inventory tree (pure)
//	rights       the Authorizer: authz over the cache (an object's ancestors, stored permissions)
//	audit        the audit trail: a request's record filled in as it goes, batched to etcd
//	leader       the election among servers and the leader-fenced transaction
//	ca           the datacenter CA in the store (its key sealed), the embedded etcd member's
//	             TLS files and their renewal, the server's serving certificate
//	tasks        the task registry and runner; Submit queues a task with the request's writes
//	hosts        the hosts' agents behind the Client interface (hoststest.Fake for tests), the
//	             bus of what heartbeats tell; hosts/liveness ingests heartbeats and watches for silence
//	placement    where a VM goes and whether a host can power it on (reservations, MAC claims)
//	inventory    the rules every domain shares: lookups, a VM's host and config, readiness, claims
//	enroll       host identity: join tokens, join, certificate renewal and replace
//	vms          VM lifecycle: create, define, power, delete, hot-add, guest access
//	migration    live and cold migration, storage motion
//	storage      snapshots and chains, clones and templates, disks
//	transfer     images, OVF/OVA and disk imports, exports
//	ha           host failure handling, VM restarts, guest heartbeat resets
//	maintenance  maintenance mode and evacuation
//	network      distributed switches and port groups, each host's desired network, realization
//	events       what changes mean to a user: the event log behind /api/v1/events, resume, fan-out
//	views        objects as the API shows them: referenced names, sums over VMs; the list cache
//
// Who may call whom, by layer (a package imports lower layers only; the
// test in this directory checks it): 0 retry, authz, audit; 1 state, auth; 2 leader, ca,
// tasks, hosts, placement, rights; 3 inventory; 4 enroll, hosts/liveness and the
// domain packages, vms to network, which call each other only through small interfaces
// they declare, wired by the server; 5 events and views, the read side,
// which may use the domain packages' pure functions (storage's datastore
// alarms, a VM's storage). No package here imports internal/server.
package control
