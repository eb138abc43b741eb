// Package views shows the inventory's objects as the API answers them:
// Viewer.View fills in what the store does not keep (the current names of
// referenced objects, folders by their paths, sums over VMs from the
// tally, a datastore's provisioned and allocated bytes and the hosts that
// reach it, a VM's storage and visible snapshot tree), and ListCache
// keeps the encoded views by revision so that a long list costs copying
// bytes.
//
// views is on layer 5 of internal/control: it reads through state and
// calls storage's and inventory's pure functions (VMStorage, VisibleTree,
// FolderPath); nothing in
// internal/control imports it.
package views
