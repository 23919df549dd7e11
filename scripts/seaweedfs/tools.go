//go:build tools

// Package tools names the one program this module builds: SeaweedFS's `weed`.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
