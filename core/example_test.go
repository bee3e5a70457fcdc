package core_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shmfs/shmfs/core"
)

// A publisher sends on a topic; every subscriber of the topic, in this
// process or another on the same host, receives each message.
func ExamplePublisher() {
	node, err := core.OpenNode(core.Config{Domain: "example-pub"}) // processes of one domain see each other
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	sub, err := node.NewSubscriber("greetings", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()

	pub, err := node.NewPublisher("greetings", &core.PublisherOptions{
		Type:       "text",
		AckTimeout: time.Second, // never overwrite what a subscriber has not taken
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pub.Send(ctx, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s (clock %d)\n", msg.Data, msg.Clock)
	// Output: hello (clock 1)
}

// A zero-copy subscriber reads each payload in place in shared memory; the
// view is valid only inside the callback.
func ExampleSubscriber_ReceiveFunc() {
	node, err := core.OpenNode(core.Config{Domain: "example-zc"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	sub, err := node.NewSubscriber("frames", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	pub, err := node.NewPublisher("frames", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Fill the message in place, too: no copy on either side.
	err = pub.SendFunc(ctx, 4, func(buf []byte) error {
		copy(buf, "abcd")
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = sub.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		fmt.Printf("%d bytes: %s, zero-copy %v\n", h.Size, view, h.ZeroCopy)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: 4 bytes: abcd, zero-copy true
}
