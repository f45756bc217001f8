module github.com/heraldmq/herald/services/herald

go 1.26.8
