// Package ovf reads and writes OVF packages (DMTF DSP0243, versions 0.9,
// 1.x and 2.0): the descriptor, the manifest and its certificate, the OVA
// tar container, and the OVF environment handed to a guest. It is pure:
// it works on bytes, io.Readers and io.Writers only, so that everything a
// hostile package can reach is bounded and testable here. Turning a
// descriptor into vdc hardware (Plan) drops what vdc cannot give a VM and
// says so in warnings; the server decides the rest (placement, port
// groups, datastores).
package ovf
