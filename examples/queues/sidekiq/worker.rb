# The job the Sidekiq workers run: send an email (here: sleep as long as it
# would take). Sidekiq connects to REDIS_URL.
require "sidekiq"

class EmailJob
  include Sidekiq::Worker
  sidekiq_options queue: "emails", retry: 5

  def perform(user_id, seconds = 2.0)
    sleep seconds
  end
end
