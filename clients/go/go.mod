module elock.dev/go

go 1.19
