# Enqueues a burst of Sidekiq jobs: REDIS_URL=redis://localhost:6379/0 ruby producer.rb 500
require_relative "worker"
require "sidekiq/api"

count = Integer(ARGV.fetch(0))
count.times { |i| EmailJob.perform_async(i) }
# Scheduled work counts once it is due (include Scheduled).
EmailJob.perform_in(300, -1)
puts "enqueued #{count} jobs on emails: #{Sidekiq::Queue.new("emails").size} waiting"
