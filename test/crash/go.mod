module github.com/fedora-infra/fedmsg-relay/test/crash

go 1.24

replace github.com/fedora-infra/fedmsg-relay => ../..

require github.com/hanwen/go-fuse/v2 v2.12.1

require golang.org/x/sys v0.28.0 // indirect
