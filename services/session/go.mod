module github.com/heraldmq/herald/services/session

go 1.26.8
