module github.com/fedora-infra/fedmsg-relay/test/crash

go 1.24

replace github.com/fedora-infra/fedmsg-relay => ../..

require (
	github.com/fedora-infra/fedmsg-relay v0.0.0-00010101000000-000000000000
	github.com/hanwen/go-fuse/v2 v2.12.1
)

require (
	github.com/fatih/color v1.13.0 // indirect
	github.com/hashicorp/go-hclog v1.6.3 // indirect
	github.com/mattn/go-colorable v0.1.12 // indirect
	github.com/mattn/go-isatty v0.0.14 // indirect
	github.com/rabbitmq/amqp091-go v1.16.0 // indirect
	golang.org/x/sys v0.28.0 // indirect
)
